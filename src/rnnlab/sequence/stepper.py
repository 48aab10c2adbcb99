"""One unrecorded time step through every layer of a unidirectional network: the kernel
behind ``layer.step`` at inference and ``layer.freeze()``.

Both read a list of ``StepWeights``, one per layer, made once and reused:

- ``live_weights``: transposed *views* of the parameters and their own biases (b_ih added
  to x W_ih^T, b_hh to h W_hh^T, as torch does). In-place edits of the parameters are seen
  at the next step; nothing is copied.
- ``frozen_weights``: a snapshot laid out for speed. Each W^T is a row-major copy (the
  layout BLAS reads fastest for a row times a matrix: about 20% less time at H = 256,
  batch 1); for families whose every gate is x- and h-part simply added (RNN, LSTM:
  ``fold == num_gates`` and ``fused_step``), [W_ih^T; W_hh^T] is one matrix and
  [x | h] meets it in one matmul, with b_ih + b_hh summed once. GRU keeps two matmuls
  (its n gate needs the two parts apart) and b_hh of r and z folded into b_ih.

The numbers equal the layer on a length-1 sequence to rounding (the snapshot sums in
another order).
"""
from typing import NamedTuple, Optional

import numpy as np

from .records import LayerWeights

_QUIET = dict(over="ignore", invalid="ignore", under="ignore", divide="ignore")


class StepWeights(NamedTuple):
    joint: Optional[np.ndarray]     # (I + H_out, G*H) [W_ih^T; W_hh^T], or None
    w_ih_t: np.ndarray              # (I, G*H)
    w_hh_t: np.ndarray              # (H_out, G*H)
    b_x: Optional[np.ndarray]       # added to the whole pre-activation row (or x W_ih^T)
    b_h: Optional[np.ndarray]       # added to h W_hh^T from column b_h_at on
    b_h_at: int
    w_hr_t: Optional[np.ndarray]    # (H, H_out) projection, or None
    H: int


def live_weights(fam, weights):
    """Views of the parameters (``weights``: per layer, a list with one LayerWeights)."""
    out = []
    for layer in weights:
        w_ih, w_hh, b_ih, b_hh, w_hr = layer[0]
        out.append(StepWeights(None, w_ih.T, w_hh.T, b_ih, b_hh, 0,
                               None if w_hr is None else w_hr.T,
                               w_hh.shape[0] // fam.num_gates))
    return out


def frozen_weights(fam, weights):
    """A snapshot in the fastest layout (copies: later edits of the parameters do not
    reach it)."""
    out = []
    for layer in weights:
        w = LayerWeights(*layer[0])
        GH = w.w_hh.shape[0]
        H = GH // fam.num_gates
        folded = fam.fold * H
        b_x = b_h = None
        if w.b_ih is not None:
            b_x = w.b_ih.copy()
            b_x[:folded] += w.b_hh[:folded]
            b_h = w.b_hh[folded:].copy() if folded < GH else None
        w_hr_t = None if w.w_hr is None else np.array(w.w_hr.T, order="C")
        if folded == GH and getattr(fam, "fused_step", False):
            I = w.w_ih.shape[1]
            joint = np.empty((I + w.w_hh.shape[1], GH), dtype=w.w_ih.dtype)
            joint[:I] = w.w_ih.T
            joint[I:] = w.w_hh.T
            out.append(StepWeights(joint, joint[:I], joint[I:], b_x, None, GH, w_hr_t, H))
        else:
            out.append(StepWeights(None, np.array(w.w_ih.T, order="C"),
                                   np.array(w.w_hh.T, order="C"), b_x, b_h, folded, w_hr_t, H))
    return out


def step_layers(fam, x, layers, h, c):
    """x (N, H_in); h (L, N, H_out); c (L, N, H) or None; layers: StepWeights per layer.
    Returns (h_new, c_new) shaped like h and c; the output is h_new[-1].

    Lean on purpose (a batch-1 step is ~10 ufunc calls of ~0.5 us each): no scratch
    beyond what the cell writes, no per-step bias arithmetic beyond one add per part."""
    dt = x.dtype
    N = x.shape[0]
    h_new = np.empty(h.shape, dtype=dt)
    c_new = None if c is None else np.empty(c.shape, dtype=dt)
    inp = x
    with np.errstate(**_QUIET):
        for k, s in enumerate(layers):
            if s.joint is not None:
                gx = np.dot(np.concatenate((inp, h[k]), axis=1), s.joint)   # (N, G*H)
                gh = None                                   # already in gx
            else:
                gx = np.dot(inp, s.w_ih_t)
                gh = np.dot(h[k], s.w_hh_t)
                if s.b_h is not None:
                    if s.b_h_at:
                        gh[:, s.b_h_at:] += s.b_h
                    else:
                        gh += s.b_h
            if s.b_x is not None:
                gx += s.b_x
            target = h_new[k] if s.w_hr_t is None else np.empty((N, s.H), dtype=dt)
            store = np.empty((N, fam.store * s.H), dtype=dt)
            cn, _ = fam.step(gx, gh, h[k], None if c is None else c[k], target, store)
            if s.w_hr_t is not None:
                np.dot(target, s.w_hr_t, out=h_new[k])
            if cn is not None:
                c_new[k] = cn
            inp = h_new[k]
    return h_new, c_new
