"""One sequence through a one-layer, one-direction layer at inference by a shorter path:
the call a service repeats (a stream in chunks, ``layer(x, hx)`` again and again).

The general path (records.run_call: checks and layouts, the pool's lease, the driver's
choices, the call's record: ~100 Python calls) runs slowly after a time loop has emptied
the caches. Here, the checks that make the call one the general path sends to the pair,
then the driver's own call of it (driver._pair_forward: the kernel's arguments built in
one place): 9-49 us a call less, 5-8% at T = 10, 1-2% at T = 100 (BENCHMARKS.md, "A
shorter path for one sequence"). Anything
else (another shape, dtype or layout, an array the kernels would copy, a recorded call,
lengths, masks, packing, the pair off, busy or cooling down) returns None, and the layer
takes the general path (those checks cost a declined call 0.4-1.4 us: the cheapest come
first). Both give the same bits and leave the layer's records alike (tests/test_quick.py)."""
import numpy as np

from ..cells import by_mode
from ..sequence import driver as D      # its names looked up at each call: what the
from ..sequence import pair as P        # driver calls, even where a test replaces it
from ..sequence.pool import PLAIN
from ..sequence.records import LayerWeights
from ..tuning import POOL_MIN
from .grad_mode import is_recording

F32 = np.dtype(np.float32)


def _plain(a, shape):
    """Whether a is a float32 array of ``shape`` the kernels take as it is (kernels.ready
    would not copy it: C-contiguous and writeable; native byte order)."""
    return (type(a) is np.ndarray and a.dtype == F32 and a.shape == shape
            and a.flags.c_contiguous and a.flags.writeable)


def _states(hx, cell, H):
    """(h0, c0) as the kernel reads them, (N, H) = (1, H), or None when hx is not plain."""
    if hx is None:
        return np.zeros((1, H), F32), (np.zeros((1, H), F32) if cell else None)
    if not cell:
        return (hx[0], None) if _plain(hx, (1, 1, H)) else None
    if type(hx) is tuple and len(hx) == 2 and all(_plain(s, (1, 1, H)) for s in hx):
        return hx[0][0], hx[1][0]
    return None


def forward(layer, input, hx):
    """``layer(input, hx)``'s result by the shorter path, or None (the general path)."""
    if (type(input) is not np.ndarray or input.ndim != 3 or input.shape[1] != 1
            or input.shape[0] < P.PAIR_STEPS or layer.num_layers != 1 or layer.bidirectional
            or layer.proj_size or layer.batch_first or layer.dtype != F32):
        return None
    T, N, I = input.shape
    H = layer.hidden_size
    fam = by_mode(layer.family)
    GH = fam.num_gates * H
    if (GH * H < min(P.PAIR_MIN, P.PAIR_LONG_MIN)            # too small for the pair at a
            or I != layer.input_size or not D.wanted(fam, F32, 1, GH, H, False, T)  # glance,
            or not _plain(input, (T, 1, I)) or is_recording(layer)):        # then its rule
        return None
    w_ih, w_hh, b_ih, b_hh, w_hr, w_p = layer.weights()[0][0]
    if (w_hr is not None or w_p is not None or not _plain(w_ih, (GH, I))
            or not _plain(w_hh, (GH, H)) or (b_ih is None) != (b_hh is None)
            or (b_ih is not None and not (_plain(b_ih, (GH,)) and _plain(b_hh, (GH,))))):
        return None
    states = _states(hx, fam.has_cell_state, H)
    if states is None or P._state["lock"].locked():     # busy: the general path, which
        return None                                     # tries once and goes on without
    w = LayerWeights(w_ih, w_hh, b_ih, b_hh)
    with np.errstate(**D._QUIET):
        bias, b_rest = D._fold_bias(fam, w)
    reverse = getattr(layer, "direction", "forward") == "reverse"
    rec = layer._records
    lease = PLAIN if input.size * H < POOL_MIN else rec.pool.lease()   # as run_call: big
    try:                                                  # ones from the layer's pool
        done = D._pair_forward(fam, input, w, bias, b_rest, *states, reverse, lease, False)
    finally:
        lease.release()
    if done is None:
        return None
    out, h_n, c_n = done
    rec.freed, rec.last_dropout_masks = False, []     # as run_call (layer.forward: the rest)
    output = out.view()
    output.flags.writeable = False      # as the general path's (a recorded call's is read)
    h_n = h_n[None].copy()
    return (output, h_n) if c_n is None else (output, (h_n, c_n[None].copy()))
