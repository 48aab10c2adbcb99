"""The common inference call without the record's bookkeeping: unrecorded, one direction,
no lengths, no dropout masks (given or drawn). Each layer runs exactly as run_forward
runs it (driver._direction_forward, the same path and arguments: the same bits); what is
left out is what only a recorded, bidirectional, masked or variable-length call needs
(the Cache and its lists, the directions' closure, the masks, the batch's sort), ~4 us of
a call's ~35 us of Python (LSTM (50, 16, 32, 32), the kernel's call stubbed: 36.5 ->
32.5 us; BENCHMARKS.md, "What a small call costs outside its kernel").
"""
import numpy as np

from ..cells import by_mode
from .driver import _QUIET, _direction_forward, _fold_bias, _stacked
from .records import LayerWeights


def wanted(record, weights, lengths, masks, training, dropout):
    """Whether ``run`` serves this run_forward call (its keyword arguments)."""
    return (not record and lengths is None and masks is None and len(weights[0]) == 1
            and not (training and dropout > 0 and len(weights) > 1))


def run(mode, x, weights, h0, c0, lease, reverse):
    """run_forward(mode, x, weights, h0, c0, lease=lease, record=False, reverse=reverse)
    for a call ``wanted`` says is one: ((output, h_n, c_n), dropout_masks), the masks
    run_forward's record would name (None for each layer but the last)."""
    fam = by_mode(mode)
    L, N, dt = len(weights), x.shape[1], x.dtype
    cell = fam.has_cell_state
    inp, h_n, c_n = x, [], []
    with np.errstate(**_QUIET):
        for k in range(L):
            w = LayerWeights(*weights[k][0])
            GH, H_out = w.w_hh.shape
            h0k = np.zeros((N, H_out), dt) if h0 is None else h0[k]
            c0k = None
            if cell:
                c0k = np.zeros((N, GH // fam.num_gates), dt) if c0 is None else c0[k]
            out, hn, cn, _ = _direction_forward(fam, inp, h0k, c0k, w, *_fold_bias(fam, w),
                                                reverse, None, lease, k < L - 1, False)
            h_n.append(hn.copy())                    # hn may view a buffer reused later
            c_n.append(None if cn is None else cn.copy())
            if k > 0:
                lease.give_back(inp)                 # the layer below's output, read
            inp = out
    return (inp, _stacked(h_n), _stacked(c_n) if cell else None), [None] * (L - 1)
