"""The public, checked entry points of the sequence driver: ``forward`` and ``backward``
check every argument (TypeError / ShapeError / ValueError naming it), then call
driver.run_forward / bptt.run_backward. The layer classes check in their own terms and
call those directly."""
import numpy as np

from ..cells import by_mode
from ..checks import float_array, gradient_array, to_numpy
from ..errors import BackwardError, ShapeError
from .bptt import run_backward
from .driver import run_forward
from .packed import check_lengths
from .pool import PLAIN
from .records import Cache, LayerWeights


def _weights_checked(weights, fam, dtype):
    """weights as a list over layers of lists over directions of LayerWeights, or a
    TypeError / ShapeError saying what is off."""
    if not isinstance(weights, (list, tuple)) or not weights or not all(
            isinstance(layer, (list, tuple)) and len(layer) in (1, 2) for layer in weights):
        raise TypeError("weights must be a list over layers of a list over 1 or 2 directions "
                        "of (w_ih, w_hh, b_ih, b_hh, w_hr) tuples")
    D = len(weights[0])
    out = []
    for k, layer in enumerate(weights):
        if len(layer) != D:
            raise ShapeError(f"weights: layer {k} has {len(layer)} directions, layer 0 has {D}")
        row = []
        for d, w in enumerate(layer):
            if not isinstance(w, (list, tuple)) or not 2 <= len(w) <= 6:
                raise TypeError(f"weights[{k}][{d}] must be a (w_ih, w_hh, b_ih, b_hh, w_hr) "
                                f"tuple, got {type(w).__name__}")
            w = LayerWeights(*(None if a is None else float_array(a, dtype, f"weights[{k}][{d}]")
                               for a in w))
            row.append(w)
        out.append(row)
    G = fam.num_gates
    H_out = out[0][0].w_hh.shape[1]
    GH = out[0][0].w_hh.shape[0]
    if GH % G or out[0][0].w_hh.ndim != 2:
        raise ShapeError(f"w_hh must be (G*H, H_out) with G = {G}, got {out[0][0].w_hh.shape}")
    H = GH // G
    for k, layer in enumerate(out):
        for d, w in enumerate(layer):
            in_k = out[0][0].w_ih.shape[1] if k == 0 else D * H_out
            want = {"w_ih": (GH, in_k), "w_hh": (GH, H_out), "b_ih": (GH,), "b_hh": (GH,),
                    "w_hr": (H_out, H), "w_p": (3 * H,)}
            for name, arr in w._asdict().items():
                if arr is not None and arr.shape != want[name]:
                    raise ShapeError(f"weights[{k}][{d}].{name}: expected shape {want[name]}, "
                                     f"got {arr.shape}")
            if (w.b_ih is None) != (w.b_hh is None) or (w.w_hr is None) != (H_out == H):
                raise ShapeError(f"weights[{k}][{d}]: give both biases or neither, and w_hr "
                                 "exactly when H_out differs from H")
    return out


def forward(mode, x, weights, h0=None, c0=None, *, dropout=0.0, training=False, rng=None,
            lengths=None, masks=None, lease=PLAIN, record=True, reverse=False):
    """Run a (multi-layer, possibly bidirectional) recurrent network.

    mode: a family's mode string ("RNN_TANH", "RNN_RELU", "GRU", "LSTM") or a Family.
    x: (L, N, H_in). h0: (num_layers * D, N, H_out) or None (zeros). c0 (LSTM only):
    (num_layers * D, N, H) or None. lengths: None or N ints in 1..L (packed semantics:
    each sequence stops at its own length, the reverse direction starts at its own last
    element, outputs past the length are 0; values there are never read).
    masks: None, or one array (or None: no dropout) per layer but the last, shaped
    (L, N, D * H_out), used as the dropout masks (already scaled by 1 / (1 - p)) instead
    of drawing them with ``rng``; ``cache.dropout_masks`` holds the masks a call used.
    reverse=True (one direction per layer only): it runs over reversed time, as a
    direction="reverse" layer.
    lease: where the internal buffers come from (rnnlab.sequence.pool); the caller releases
    it once the record is no longer needed. record=False keeps nothing for backward.
    Returns ``(output, h_n, c_n), cache`` with output (L, N, D * H_out) and c_n None
    unless the family has a cell state.
    """
    fam = by_mode(mode)
    x = to_numpy(x, "x")
    dt = x.dtype
    if dt not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {dt}")
    if x.ndim != 3 or x.shape[0] == 0:
        raise ShapeError(f"x must be (L, N, H_in) with L >= 1, got shape {x.shape}")
    weights = _weights_checked(weights, fam, dt)
    T, N = x.shape[:2]
    L, D = len(weights), len(weights[0])
    w0 = weights[0][0]
    H_out, H = w0.w_hh.shape[1], w0.w_hh.shape[0] // fam.num_gates
    if x.shape[2] != w0.w_ih.shape[1]:
        raise ShapeError(f"x has {x.shape[2]} features, weights[0][0].w_ih expects "
                         f"{w0.w_ih.shape[1]}")
    if h0 is not None:
        h0 = float_array(h0, dt, "h0")
        if h0.shape != (L * D, N, H_out):
            raise ShapeError(f"h0: expected shape {(L * D, N, H_out)}, got {h0.shape}")
    if c0 is not None:
        if not fam.has_cell_state:
            raise ValueError(f"c0 is only for families with a cell state, not {fam.mode}")
        c0 = float_array(c0, dt, "c0")
        if c0.shape != (L * D, N, H):
            raise ShapeError(f"c0: expected shape {(L * D, N, H)}, got {c0.shape}")
    if lengths is not None:
        lengths = check_lengths(lengths, T, N)
    if masks is not None:
        masks = check_masks(masks, L, (T, N, D * H_out), dt)
    if not isinstance(reverse, (bool, np.bool_)):
        raise TypeError(f"reverse must be a bool, got {type(reverse).__name__}")
    return run_forward(fam, x, weights, h0, c0, dropout=dropout, training=training, rng=rng,
                       lengths=lengths, masks=masks, lease=lease, record=record,
                       reverse=bool(reverse) and len(weights[0]) == 1)


def check_masks(masks, L, shape, dtype):
    """Dropout masks (time-major): one per layer but the last, each None or ``shape``."""
    if not isinstance(masks, (list, tuple)):
        raise TypeError(f"dropout masks must be a list (one per layer but the last), got "
                        f"{type(masks).__name__}")
    if len(masks) != L - 1:
        raise ValueError(f"dropout masks: expected {L - 1} arrays (one per layer but the "
                         f"last), got {len(masks)}")
    out = []
    for m in masks:
        if m is not None:
            m = gradient_array(m, shape, dtype, "dropout mask", cast=True)
            m = np.array(m, copy=True)                   # the record keeps its own copy
        out.append(m)
    return out


def backward(cache, d_output=None, d_h_n=None, d_c_n=None, dh_norms=False, pool=None):
    """Backpropagation through time for a ``forward`` call.

    d_output (L, N, D * H_out), d_h_n (num_layers * D, N, H_out), d_c_n
    (num_layers * D, N, H); any may be None: no gradient from there (as an output left
    out of the loss in torch). Returns a dict with ``dx`` (L, N, H_in), ``dh0``, ``dc0``
    (None without a cell state) and ``dweights``, nested like ``weights``
    (LayerWeights; None where the parameter does not exist). With dh_norms=True it also
    holds ``dh_norms``: per layer and direction an (L, N) array of |dloss/dh_t|.
    pool: an rnnlab.sequence.pool.Pool for the internal buffers.
    """
    if not isinstance(cache, Cache):
        raise TypeError(f"cache must be the record returned by forward, got "
                        f"{type(cache).__name__}")
    dm, dt = cache.dims, cache.dtype
    shapes = {"d_output": (dm.T, dm.N, dm.D * dm.H_out),
              "d_h_n": (dm.L * dm.D, dm.N, dm.H_out), "d_c_n": (dm.L * dm.D, dm.N, dm.H)}
    given = {"d_output": d_output, "d_h_n": d_h_n, "d_c_n": d_c_n}
    if d_c_n is not None and not cache.family.has_cell_state:
        raise BackwardError(f"d_c_n is only for families with a cell state, not "
                            f"{cache.family.mode}")
    g = {k: None if v is None else gradient_array(v, shapes[k], dt, k) for k, v in given.items()}
    return run_backward(cache, g["d_output"], g["d_h_n"], g["d_c_n"], dh_norms, pool)
