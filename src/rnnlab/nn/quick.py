"""One sequence, or one batch, through a one-layer, one-direction layer at inference by a
shorter path: the call a service repeats (a stream in chunks, ``layer(x, hx)`` again and
again).

The general path (records.run_call: checks and layouts, the pool's lease, the driver's
choices, the call's record: ~100 Python calls) runs slowly after a time loop has emptied
the caches. Here, the first call of a shape checks that the call is one the general path
sends to the pair (one row: sequence/pair_call.PairCall, the kernel, its scratch, the
biases' layout) or runs in halves (3 rows or more: pair_call.BatchCall, the kernel and
the biases' layout) and plans it, kept in the layer (``_quick``) for the calls of that
shape after it; those check only what can change between calls (the input's and states'
arrays, the mode, batch_first, set_num_threads, the weights' arrays and flags, the pair
free) and run the plan. 100-240 us a call less than the general path at LSTM (100, 1,
256, 256) and (100, 1, 512, 512) (BENCHMARKS.md, "A shorter path for one sequence");
10-25 us at batches (BENCHMARKS.md, "A shorter path for a batch"). A batch shape the
general path runs another way is planned as such (``call`` None), not worked out again
at each call. Anything else (another shape, dtype or layout, an array the kernels would
copy, a recorded call, lengths, masks, packing, the pair off, busy or cooling down for a
single row) returns None, and the layer takes the general path. Both give the same bits
and leave the layer's records alike (tests/test_quick.py)."""
from typing import NamedTuple

import numpy as np

from ..cells import by_mode
from ..sequence import driver as D      # its names looked up at each call: what the
from ..sequence import pair as P        # driver calls, even where a test replaces it
from ..sequence.pair_call import BatchCall, PairCall
from .grad_mode import is_recording

F32 = np.dtype(np.float32)


def _plain(a, shape):
    """Whether a is a float32 array of ``shape`` the kernels take as it is (kernels.ready
    would not copy it: C-contiguous and writeable; native byte order)."""
    return (type(a) is np.ndarray and a.dtype == F32 and a.shape == shape
            and a.flags.c_contiguous and a.flags.writeable)


def _states(hx, cell, N, H):
    """(h0, c0) as the kernel reads them, (N, H), or None when hx is not plain."""
    if hx is None:
        return np.zeros((N, H), F32), (np.zeros((N, H), F32) if cell else None)
    if not cell:
        return (hx[0], None) if _plain(hx, (1, N, H)) else None
    if type(hx) is tuple and len(hx) == 2 and all(_plain(s, (1, N, H)) for s in hx):
        return hx[0][0], hx[1][0]
    return None


def _plan(layer, input):
    """The layer's plan for calls shaped like ``input`` (stored in ``_quick``), or None
    where such a call is not the shorter path's (the cheapest checks first): one row on
    the pair (PairCall), or 3 rows or more in halves (BatchCall)."""
    if (type(input) is not np.ndarray or input.ndim != 3 or input.shape[1] == 2
            or 0 in input.shape[:2] or layer.num_layers != 1 or layer.bidirectional
            or layer.proj_size or layer.batch_first or layer.dtype != F32):
        return None
    T, N, I = input.shape
    H = layer.hidden_size
    fam = by_mode(layer.family)
    GH = fam.num_gates * H
    if I != layer.input_size or (N == 1 and (                # one row: too short or small
            T < P.PAIR_STEPS or GH * H < min(P.PAIR_MIN, P.PAIR_LONG_MIN)   # for the pair
            or not D.wanted(fam, F32, 1, GH, H, False, T))):   # at a glance, then its rule
        return None
    w_ih, w_hh, b_ih, b_hh, w_hr, w_p = layer.weights()[0][0]
    weights, shapes = (w_ih, w_hh, b_ih, b_hh), ((GH, I), (GH, H), (GH,), (GH,))
    if (w_hr is not None or w_p is not None or (b_ih is None) != (b_hh is None)
            or not _weights_plain(weights, shapes)):
        return None
    reverse = layer.direction == "reverse"
    call = (PairCall.make(fam, weights, T, I, reverse) if N == 1
            else BatchCall.make(fam, weights, T, N, reverse))
    if call is None and N == 1:
        return None
    plan = layer.__dict__["_quick"] = _Plan(input.shape, layer.__dict__["_weights"], shapes,
                                            fam.has_cell_state, call)
    return plan             # (call None: a batch the general path runs another way, by its
                            # shape alone: that is kept too, not worked out at every call)


class _Plan(NamedTuple):
    shape: tuple        # the input's (T, N, I)
    cache: list         # the layer's weights() cache it was made from (.to() replaces it)
    shapes: tuple       # the weights' shapes, as the kernels take them
    cell: bool          # the family has a cell state
    call: object        # the planned call: PairCall, BatchCall, None (the general path's)


def _weights_plain(weights, shapes):
    """Whether the weights (None: absent) are still as the kernels take them (their flags
    may change; the parameter arrays themselves change only with .to, which drops the
    plan)."""
    for a, shape in zip(weights, shapes):
        if a is not None and not _plain(a, shape):
            return False
    return True


def forward(layer, input, hx):
    """``layer(input, hx)``'s result by the shorter path, or None (the general path)."""
    if is_recording(layer):
        return None
    d = layer.__dict__
    plan = d.get("_quick")
    if (plan is None or type(input) is not np.ndarray or input.shape != plan.shape
            or d.get("_weights") is not plan.cache):
        plan = _plan(layer, input)
        if plan is None:
            return None
    if plan.call is None:
        return None
    one = plan.shape[1] == 1
    if (not _plain(input, plan.shape) or layer.batch_first
            or (one and not (P.enabled() and D.sgemm_address()))   # (else the queue's: the
            or not _weights_plain(plan.call.weights, plan.shapes)):   # driver)
        return None
    states = _states(hx, plan.cell, plan.shape[1], plan.call.H)
    if states is None:
        return None
    h0, c0 = states
    done = plan.call.run(input, h0, h0 if c0 is None and one else c0)   # (PairCall: h0)
    if done is None:                                    # busy or cooling: the general path,
        return None                                     # which tries once and goes on
    out, h_n, c_n = done
    rec = layer._records
    rec.freed, rec.last_dropout_masks = False, []     # as run_call (layer.forward: the rest)
    output = out.view()
    output.flags.writeable = False      # as the general path's (a recorded call's is read)
    h_n = h_n[None].copy()
    return (output, h_n) if not plan.cell else (output, (h_n, c_n[None]))   # (c_n: its own)
