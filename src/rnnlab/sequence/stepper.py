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

At batch 1-4 (``tuning.FEW_ROWS``) two layouts take a BLAS matrix-vector product per
row with the weights in torch's own layout, then the gates (``_blas_step``), because there
BLAS reads the weights fastest and, from about 2^19 weights, splits the product over its
own threads (OpenBLAS; no thread pool of ours, so nothing to contend with the caller's
BLAS calls):

- frozen RNN / LSTM layers of ``tuning.BLAS_ROWS`` weights and more: [W_ih | W_hh] as
  one (G*H, I + H_out) matrix meets [x | h]; more rows read its transpose;
- live float32 layers with numba: W_ih x and W_hh h from the parameters themselves, the
  gates compiled (kernels.cell_for).

The frozen snapshot also takes the compiled float32 one-step loop of kernels.py (numba)
where it is there and wins: x W_ih^T + b by BLAS, then h W_hh^T and every gate in one
compiled pass (up to tuning.COMPILED_LOOP_MAX; for fused families while G*H * H_out <=
tuning.JOINT_WINS, above which the one joint BLAS call is faster).

Unrecorded steps of float32 layers of tuning.PAIR_STEP_MIN weights and more (batch 1 to
FEW_ROWS, no projection) take the pair's step where it may run (pair_step.py: the caller
and rnnlab's worker thread, half of the units each, from the weights in torch's layout:
the live parameters, or for a snapshot copies), and every layer with a compiled step for
its rows runs through ``compiled_steps`` (nothing else around the calls).

``freeze(threads=k)`` (k >= 3) adds, for float32 GRU/LSTM layers of tuning.THREADED_MIN
weights and more, a copy of the weights in torch's layout for the threaded compiled step
(kernels.rows_step_for: each thread computes a block of units from its own rows), taken
at batch sizes up to tuning.FEW_ROWS. ``layer.step`` takes the same step straight from
the live parameters (already in torch's layout: nothing is copied) after
``rnnlab.set_num_threads(k)``, k >= 3 (``StepWeights.rows_w``, looked up per step by
``_live_rows_step``). Opt-in: see rows_step_for for why.

The numbers equal the layer on a length-1 sequence to rounding (the snapshot sums in
another order).
"""
from typing import NamedTuple, Optional

import numpy as np

from ..tuning import (BLAS_ROWS, COMPILED_LOOP_MAX, FEW_ROWS, JOINT_WINS, PER_ROW_ALWAYS,
                      PER_ROW_MIN, THREADED_MIN)
from . import pair_step
from .kernels import (NO_BIAS, NO_BOX, NO_STORE, cell_for, get_num_threads, is_ready,
                      kernel_for, pair_step_for, ready, row_step_for, rows_step_for)
from .linalg import dot, per_row, transposed
from .pool import aligned_copy, aligned_empty
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
    kernel: object = None           # the compiled loop (kernels.py), or None
    b_rest: Optional[np.ndarray] = None    # its b_rest (zeros without bias)
    b_fold: Optional[np.ndarray] = None    # live: b_hh of the folded gates, added to gx
    rows: bool = False              # live: the kernel reads W_hh itself (w_hh_t.T)
    rows_step: object = None        # the threaded compiled step (kernels.rows_step_for)
    rows_w: tuple = ()              # (w_ih, w_hh, b_ih, b_hh) in torch's layout for the
    #                                 three row steps (live: the parameters themselves)
    threads: int = 1                # its threads
    rows_size: int = 0              # live: the layer's weights, for rows_step_for
    blas: Optional[tuple] = None    # up to FEW_ROWS rows: (w_x, w_h, b_ih, b_hh, cell), see
    #                                 _blas_step
    row_step: object = None         # the one-thread compiled step of a small layer
    #                                 (kernels.row_step_for), from rows_w
    pair_step: object = None        # the pair's step of a large one (pair_step.py), from
    #                                 rows_w


def _bias_pair(b_ih, b_hh, GH, dt, copy):
    """b_ih, b_hh as the compiled cell takes them: zeros when absent; copy: C-contiguous
    copies (a snapshot), else the arrays themselves (live, already C-contiguous)."""
    z = (lambda b: np.zeros(GH, dt) if b is None else np.array(b, order="C") if copy else b)
    return z(b_ih), z(b_hh)


def _live_blas(fam, w_ih, w_hh, b_ih, b_hh):
    """``StepWeights.blas`` of a live layer, or None: per row x W_ih^T and h W_hh^T from
    the parameters themselves (views: in-place edits are seen), the gates compiled. Only
    where the compiled cell exists (float32 GRU / LSTM with numba)."""
    cell = cell_for(fam, w_ih.dtype)
    if cell is None or any(b is not None and not b.flags.c_contiguous for b in (b_ih, b_hh)):
        return None
    return (w_ih, w_hh, *_bias_pair(b_ih, b_hh, w_hh.shape[0], w_ih.dtype, False), cell)


def live_weights(fam, weights):
    """Views of the parameters (``weights``: per layer, a list with one LayerWeights)."""
    out = []
    for layer in weights:
        w_ih, w_hh, b_ih, b_hh, w_hr = layer[0][:5]
        GH = w_hh.shape[0]
        H = GH // fam.num_gates
        kernel = kernel_for(fam, w_ih.dtype, 1, GH, w_hh.shape[1], w_hr is not None)
        b_rest = b_fold = None
        if kernel is not None and w_hh.flags.c_contiguous:
            folded = fam.fold * H
            b_rest = np.zeros(GH - folded, w_ih.dtype) if b_hh is None else b_hh[folded:]
            b_fold = None if b_hh is None else b_hh[:folded]
        else:
            kernel = None
        rows_w, size, row_step, pair_k = (), 0, None, None     # none with a projection
        if w_hr is None:
            rows_w = (w_ih, w_hh, *_bias_pair(b_ih, b_hh, GH, w_ih.dtype, False))
            size = GH * (w_ih.shape[1] + w_hh.shape[1])
            if all(is_ready(a) for a in rows_w):     # else: another numba type, compiled
                row_step = row_step_for(fam, w_ih.dtype, False, size)   # again mid-run
                if pair_step.possible():
                    pair_k = pair_step_for(fam, w_ih.dtype, False, size)
        out.append(StepWeights(None, w_ih.T, w_hh.T, b_ih, b_hh, 0,
                               None if w_hr is None else w_hr.T, H, kernel, b_rest, b_fold,
                               True, rows_w=rows_w, rows_size=size,
                               blas=_live_blas(fam, w_ih, w_hh, b_ih, b_hh),
                               row_step=row_step, pair_step=pair_k))
    return out


def _rows(fam, w, threads):
    """StepWeights' rows_step, rows_w, threads, row_step and pair_step for a frozen
    layer ({} for none): the pair's step (threads 2, or None while set_num_threads is
    unset or at most 2, where the pair can run), else numba's threaded step (threads >=
    2), and a small layer's one-thread step (kernels.row_step_for), with copies of the
    weights in torch's layout (zeros for absent biases)."""
    size = w.w_hh.shape[0] * (w.w_ih.shape[1] + w.w_hh.shape[1])
    dt, proj = w.w_ih.dtype, w.w_hr is not None
    t = get_num_threads() if threads is None else threads
    pair_k = (pair_step_for(fam, dt, proj, size)             # None: as set_num_threads
              if t <= 2 and threads != 1 and pair_step.possible() else None)   # says
    step = None if t < 2 or pair_k is not None else rows_step_for(fam, dt, proj, size)
    one = None if step is not None else row_step_for(fam, dt, proj, size)
    if step is None and one is None and pair_k is None:
        return {}
    return dict(rows_step=step, threads=t, row_step=one, pair_step=pair_k, rows_w=(
        aligned_copy(w.w_ih), aligned_copy(w.w_hh),
        *_bias_pair(w.b_ih, w.b_hh, w.w_hh.shape[0], dt, True)))


def frozen_weights(fam, weights, threads=1):
    """A snapshot in the fastest layout (copies: later edits of the parameters do not
    reach it). threads None (as set_num_threads says) or 2: large layers' steps may take
    the pair (pair_step.py); threads > 2: float32 GRU/LSTM layers of
    tuning.THREADED_MIN weights and more (with numba) run each step on that many threads
    (kernels.rows_step_for); 1: neither."""
    out = []
    for layer in weights:
        w = LayerWeights(*layer[0])
        GH = w.w_hh.shape[0]
        H = GH // fam.num_gates
        folded = fam.fold * H
        rows_kw = _rows(fam, w, threads)
        b_x = b_h = None
        if w.b_ih is not None:
            b_x = aligned_copy(w.b_ih)
            b_x[:folded] += w.b_hh[:folded]
            b_h = aligned_copy(w.b_hh[folded:]) if folded < GH else None
        w_hr_t = None if w.w_hr is None else transposed(w.w_hr)
        kernel = kernel_for(fam, w.w_ih.dtype, 1, GH, w.w_hh.shape[1], w.w_hr is not None)
        b_rest = None
        if kernel is not None:
            b_rest = np.zeros(GH - folded, w.w_ih.dtype) if b_h is None else b_h
        if folded == GH and getattr(fam, "fused_step", False):
            if GH * w.w_hh.shape[1] > JOINT_WINS:      # one threaded BLAS call beats the
                kernel = None                          # compiled loop's own matmul here
            I, K = w.w_ih.shape[1], w.w_ih.shape[1] + w.w_hh.shape[1]
            if GH * K >= BLAS_ROWS:                    # torch's layout, [W_ih | W_hh]: one
                #                                        (joint LSTM H = 256, 1024 x 512:
                #                                        12 vs 22 us on 2 threads, the same
                #                                        on 1)
                rows = aligned_empty((GH, K), w.w_ih.dtype, 0)  # product per row (batch
                rows[:, :I] = w.w_ih                             # up to FEW_ROWS); more
                rows[:, I:] = w.w_hh                             # read its transpose
                joint = rows.T
                blas = (rows, None, *_bias_pair(w.b_ih, w.b_hh, GH, w.w_ih.dtype, True),
                        cell_for(fam, w.w_ih.dtype))
                out.append(StepWeights(joint, joint[:I], joint[I:], b_x, None, GH, w_hr_t, H,
                                       kernel, b_rest, None, False, blas=blas,
                                       **({} if rows_kw.get("pair_step") is None
                                          else dict(rows_kw, rows_step=None))))
                continue
            joint = aligned_empty((K, GH), w.w_ih.dtype, 0)
            joint[:I] = w.w_ih.T
            joint[I:] = w.w_hh.T
            out.append(StepWeights(joint, joint[:I], joint[I:], b_x, None, GH, w_hr_t, H,
                                   kernel, b_rest, None, False, **rows_kw))
        else:
            out.append(StepWeights(None, transposed(w.w_ih),
                                   transposed(w.w_hh), b_x, b_h, folded, w_hr_t, H,
                                   kernel, b_rest, None, False, **rows_kw))
    return out


def _products(w, v):
    """v @ w^T for w (G*H, K) in torch's layout and a few rows v (N, K): one BLAS
    matrix-vector product per row, or for 3-4 rows and a small w one matrix product
    (measured, OpenBLAS: per row wins from 2^15 weights, or up to 2 rows)."""
    out = np.empty((v.shape[0], w.shape[0]), dtype=v.dtype)
    if v.shape[0] <= PER_ROW_ALWAYS or w.size >= PER_ROW_MIN:
        return per_row(w, v, out)
    return dot(v, w.T, out=out)


def _blas_step(fam, s, inp, hk, ck, target, c_out):
    """One step of a few rows (N <= FEW_ROWS) from BLAS's matrix-vector products, one per row
    and part, with the weights in torch's layout (``s.blas`` = (w_x, w_h, b_ih, b_hh,
    cell): w_x is [W_ih | W_hh] with w_h None, or W_ih with w_h W_hh; made by
    _live_blas and frozen_weights); the gates by the compiled cell or, without one, by the
    family's NumPy step. Writes h' (before any projection) into target (N, H) and LSTM's
    c' into c_out."""
    w_x, w_h, b_ih, b_hh, cell = s.blas
    N = inp.shape[0]
    xs = inp if w_h is not None else np.concatenate((inp, hk), axis=1)      # [x | h]
    ax = _products(w_x, xs)
    ah = None if w_h is None else _products(w_h, hk)
    if cell is not None:
        h_ = ready(hk)
        cell(ax, ax if ah is None else ah, ah is not None, b_ih, b_hh, h_,
             h_ if ck is None else ready(ck), target, target if c_out is None else c_out)
        return
    if s.b_x is not None:              # the family's NumPy step: only the joint form comes
        ax += s.b_x                    # here (the live form exists only with the cell)
    cn, _ = fam.step(ax, None, hk, ck, target, np.empty((N, fam.store * s.H), dtype=ax.dtype))
    if cn is not None:
        c_out[...] = cn


_LIVE_ROWS = {}       # (id(family), dtype, size >= THREADED_MIN) -> rows_step_for's answer
#                       (only the built-in families, which live as long as the process,
#                       get a step; any other family's id maps to None)


def _live_rows_step(fam, dt, size):
    """rows_step_for for a live layer, looked up once per family, dtype and side of
    THREADED_MIN (its other conditions; ~2 us a step saved)."""
    key = (id(fam), dt, size >= THREADED_MIN)
    if key not in _LIVE_ROWS:
        _LIVE_ROWS[key] = rows_step_for(fam, dt, False, size)
    return _LIVE_ROWS[key]


def _compiled_layer(fam, s, on, inp, hk, ck, hn, cn):
    """One layer's step by a compiled row step: the pair's (``on``: it may run now; the
    pair free), else a small layer's one-thread step. False: neither ran."""
    if on and s.pair_step is not None and pair_step.step(fam, s.pair_step, inp, hk, ck,
                                                         *s.rows_w, hn, cn):
        return True
    if s.row_step is None:
        return False
    s.row_step(inp, hk, ck, *s.rows_w, hn, cn, 0, NO_BOX, 0, 0)
    return True


class StepPlan(NamedTuple):
    """What compiled_steps reads of a StepWeights list, made once with it (step_plan)."""
    layers: tuple       # per layer (pair step or None, row step or None, rows_w)
    pairs: bool         # some layer has the pair's step
    rows: bool          # every layer has a one-thread row step
    either: bool        # every layer has one or the other
    key: int            # the family's key in the step box (pair_step._key)


def step_plan(fam, layers):
    """The StepPlan of ``layers`` (StepWeights per layer; ``fam`` their family)."""
    parts = tuple((s.pair_step, s.row_step, s.rows_w) for s in layers)
    return StepPlan(parts, any(p is not None for p, _, _ in parts),
                    all(r is not None for _, r, _ in parts),
                    all(p is not None or r is not None for p, r, _ in parts),
                    pair_step._key(fam))


def compiled_steps(x, plan, h, c):
    """step_layers where every layer has a compiled step for these rows (a small layer's
    one-thread step, or the pair's when it may run; ``plan``: their step_plan), with
    nothing else around them (no error state to set: the compiled code raises no
    floating-point warnings; the arrays made ready once; the pair's lock taken once for
    every layer): h_new, c_new; None when a layer has none (step_layers then runs)."""
    if x.shape[0] > FEW_ROWS:
        return None
    on = plan.pairs and pair_step.on()
    if not (plan.either if on else plan.rows):
        return None
    cell = c is not None
    x, h = ready(x), ready(h)
    c = ready(c) if cell else h
    h_new = np.empty(h.shape, dtype=x.dtype)
    c_new = np.empty(c.shape, dtype=x.dtype) if cell else h_new
    if not (on and pair_step.steps(plan.key, plan.layers, x, h, c, h_new, c_new)):
        inp = x                                 # the pair off or busy: each step alone
        for k, (two, one, w) in enumerate(plan.layers):
            (one or two)(inp, h[k], c[k], *w, h_new[k], c_new[k], 0, NO_BOX, 0, 0)
            inp = h_new[k]
    return h_new, (c_new if cell else None)


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
    threads = get_num_threads()
    on = N <= FEW_ROWS and any(s.pair_step is not None for s in layers) and pair_step.on()
    with np.errstate(**_QUIET):
        for k, s in enumerate(layers):
            if N <= FEW_ROWS and (s.row_step is not None or s.pair_step is not None):
                hk = ready(h[k])                             # the pair's or a small
                ck = hk if c is None else ready(c[k])        # layer's compiled step
                if _compiled_layer(fam, s, on, ready(inp), hk, ck, h_new[k],
                                   h_new[k] if c is None else c_new[k]):
                    inp = h_new[k]
                    continue
            rows_step, t = s.rows_step, s.threads
            if (rows_step is None and s.rows_size and threads > 1 and N <= FEW_ROWS
                    and (s.pair_step is None or threads > 2)):
                rows_step, t = _live_rows_step(fam, dt, s.rows_size), threads
            if rows_step is not None and N <= FEW_ROWS:         # threaded, compiled
                hk = ready(h[k])
                ck = hk if c is None else ready(c[k])
                rows_step(ready(inp), hk, ck, *s.rows_w, h_new[k],
                          h_new[k] if c is None else c_new[k], t)
                inp = h_new[k]
                continue
            if s.blas is not None and N <= FEW_ROWS:          # BLAS per row, torch's layout
                target = h_new[k] if s.w_hr_t is None else np.empty((N, s.H), dtype=dt)
                _blas_step(fam, s, inp, h[k], None if c is None else c[k], target,
                           None if c is None else c_new[k])
                if s.w_hr_t is not None:
                    dot(target, s.w_hr_t, out=h_new[k])
                inp = h_new[k]
                continue
            if s.kernel is not None and N * s.w_hh_t.shape[0] * s.w_hh_t.shape[1] <= COMPILED_LOOP_MAX:
                gx = dot(inp, s.w_ih_t)                     # x part by BLAS, the rest
                if s.b_x is not None:                       # compiled (kernels.py)
                    gx += s.b_x
                if s.b_fold is not None:
                    gx[:, :s.b_fold.shape[0]] += s.b_fold
                hk = ready(h[k])
                s.kernel(gx[None], s.w_hh_t.T if s.rows else s.w_hh_t, NO_BIAS, s.b_rest,
                         hk, hk if c is None else ready(c[k]), False,
                         h_new[k][None], hk if c is None else c_new[k], s.rows, NO_STORE,
                         False, 0, N)
                inp = h_new[k]
                continue
            if s.joint is not None:
                gx = dot(np.concatenate((inp, h[k]), axis=1), s.joint)   # (N, G*H)
                gh = None                                   # already in gx
            else:
                gx = dot(inp, s.w_ih_t)
                gh = dot(h[k], s.w_hh_t)
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
                dot(target, s.w_hr_t, out=h_new[k])
            if cn is not None:
                c_new[k] = cn
            inp = h_new[k]
    return h_new, c_new
