"""The sequence driver, forward: any cell family over time, layers, directions, dropout
and lengths (bptt.py is the way back).

Pure functions, no state. ``run_forward`` returns the outputs and a record (``Cache``);
bptt.run_backward takes that record and the upstream gradients and returns every
gradient. Arrays are time-major: x is (L, N, H_in). The layer classes check and lay out
their arguments, then call these; checked.py's ``forward`` / ``backward`` check first.

``weights`` is a list over layers of a list over directions of ``LayerWeights``
(or plain tuples in that order: w_ih, w_hh, b_ih, b_hh, w_hr, w_p; None where absent).

Cost design: the input projection of all steps is one matmul per layer and direction;
dW_ih, dW_hh (and dW_hr) one each after the time loop, from the per-step gradients stored
during BPTT; only h @ W_hh^T and dgh @ W_hh are sequential; inference keeps no caches.

Guarantees kept here: positions past a sequence's length never influence any result
(the recorded input is zeroed there); backward uses copies of exactly the input, states
and weights the forward saw; a direction that receives no upstream gradient is skipped,
as autograd skips a branch that is not in the loss.
"""
import contextlib
import threading
import weakref

import numpy as np

from ..cells import by_mode
from ..tuning import BY_ROWS_FEW, BY_ROWS_STEPS, FEW_ROWS
from .kernels import NO_BIAS, NO_STORE, cell_steps, kernel_for, ready
from .linalg import (both_halves, dot, gemm_rows, kept_batch_halves, kept_panels_of,
                     leased_panels, per_row, per_row_wanted, project, transposed)
from .packed import batch_sizes_for, zero_padding
from . import halves
from .blas import sgemm_address
from .pair import (directions_wanted, enabled, loop_limit, one_blas_thread, pair_kernel,
                   run_both, wanted)
from .pair import run as run_pair
from .pair_step import pair_in
from .pool import PLAIN, Pool, aligned_empty, snapshot
from .records import Cache, Dims, DirectionRecord, LayerWeights

_QUIET = dict(over="ignore", invalid="ignore", under="ignore", divide="ignore")


def _folded(fam, GH):
    """Rows of a gate block where x W_i + b_i and h W_h + b_h add (b_hh folds; dgh == dgx)."""
    return fam.fold * (GH // fam.num_gates)


def _fold_bias(fam, w):
    """(bias for x W_ih^T, rest of b_hh for h W_hh^T): b_hh of the first ``fold`` gates is
    added to the input projection once; the rest (GRU's b_hn, inside r * (...)) stays with
    the hidden part; (None, None) without bias."""
    w_hh, b_ih, b_hh = w[1], w[2], w[3]
    if b_ih is None:
        return None, None
    F, GH = _folded(fam, w_hh.shape[0]), w_hh.shape[0]
    if F == GH:                        # one pass into a new array (BatchCall: every call)
        return np.add(b_ih, b_hh), None
    return np.concatenate([b_ih[:F] + b_hh[:F], b_ih[F:]]), b_hh[F:]


def _or_zeros(b, n, dt):
    """A bias as the compiled loops take it (kernels.ready), zeros (n,) when absent."""
    return np.zeros(n, dt) if b is None else ready(b)


def _direction_forward(fam, inp, h0, c0, w, bias, b_rest, reverse, sizes, lease, pool_out,
                       record, alone=False):
    """Run one cell over time in one direction from its input inp (L, N, I): an
    unrecorded call of one row, or of a large batch (linalg.gemm_rows), on two threads by
    halves of the units (pair.py) when it can (not ``alone``: the other direction runs on
    the other thread); an unrecorded batch's rows in halves on the loop that projects the
    input as it goes (halves.forward); else the input projection of all steps as one
    matmul (recorded: two halves of its rows, one per thread, with the loop's rows in
    halves too: halves.py) and _direction_loop. Returns out (L, N, H_out), h_n, c_n and,
    when recording, the DirectionRecord."""
    T, N = inp.shape[:2]
    two = (not record and not alone and sizes is None and T > 0
           and wanted(fam, inp.dtype, N, *w.w_hh.shape, w.w_hr is not None, T))
    if two:
        done = _pair_forward(fam, inp, w, bias, b_rest, h0, c0, reverse, lease, pool_out)
        if done is not None:
            return (*done, None)
    shape = (fam, inp.dtype, T, N, *w.w_hh.shape, w.w_hr is not None)
    if not record and sizes is None and not alone and halves.unrecorded_wanted(*shape):
        GH, dt = w.w_hh.shape[0], inp.dtype
        return (*halves.forward(fam, inp, h0, c0, w, _or_zeros(bias, GH, dt),
                                _or_zeros(b_rest, GH - _folded(fam, GH), dt), reverse,
                                (lease if pool_out else PLAIN).empty, lease), None)
    split = record and sizes is None and halves.wanted(*shape)
    gx = lease.empty((T * N, w.w_ih.shape[0]), inp.dtype)
    panels = [None]           # split: two threads (halves.py), W_hh's panels for the loop
    if split:                 # packed here while the worker's half runs (halves.beside)
        halves.matmul(inp.reshape(T * N, inp.shape[2]), w.w_ih.T, gx, lambda: panels.append(
            leased_panels(w.w_hh, lease, w.w_hh.shape)), halves.beside(gx.nbytes))
    else:
        with one_blas_thread() if two else contextlib.nullcontext():  # the pair's, alone
            project(inp.reshape(T * N, inp.shape[2]), w.w_ih, gx)            # all steps
    result = _direction_loop(fam, gx.reshape(T, N, w.w_ih.shape[0]), h0, c0, w, bias,
                             b_rest, reverse, sizes, lease, pool_out, record, split, panels[-1])
    if not record:
        lease.give_back(gx)                                # inference: scratch done
    return result


def _direction_loop(fam, gx, h0, c0, w, bias, b_rest, reverse, sizes, lease, pool_out,
                    record, split=False, panels=None):
    """The time loop of one direction.

    gx (L, N, G*H): input projections x W_ih^T; the steps keep their activations in it.
    bias: b_ih with the foldable part of b_hh, added to gx (by the compiled steps as they
    go, else here at once); b_rest: the rest of b_hh, added to h W_hh^T. Returns out
    (L, N, H_out), h_n, c_n and, when recording, the DirectionRecord. split: the compiled
    loop's rows in two halves, one per thread (halves.py).
    """
    T, N, GH = gx.shape
    H_out = h0.shape[1]
    H = H_out if w.w_hr is None else w.w_hr.shape[1]
    dt = gx.dtype
    new = lease if pool_out else PLAIN
    out = (new.empty if sizes is None else new.zeros)((T, N, H_out), dt)   # padding: 0
    # (H_out, G*H) row-major, what the recurrent matmul reads fastest: a copy (also the
    # NumPy loop's record snapshot) when recording or when there are steps enough to pay
    # for it; one unrecorded step reads the transposed view
    # (its buffer, as every weight snapshot of the record, from the lease: a fresh 4 MB
    # array costs ~1 ms of page faults each call)
    if record:
        t_of = (lambda w_: transposed(w_, lease=lease))
    else:
        t_of = ((lambda w_: transposed(w_, copy=False, lease=lease)) if T > 1
                else (lambda w_: w_.T))
    # a few rows and a large W_hh: h W_hh^T as one BLAS product per row from W_hh itself,
    # which OpenBLAS splits over its threads (tuning.BLAS_ROWS), not the compiled loop;
    # the NumPy loop's record keeps W_hh^T, which BPTT's products per row read fastest
    rows = per_row_wanted(N, GH, H_out)
    kernel = None if sizes is not None or rows else kernel_for(
        fam, dt, N, GH, H_out, w.w_hr is not None, limit=loop_limit(record))
    w_buf = None
    # a few unrecorded steps of a few rows on the compiled loop: W_hh itself, by rows,
    # not a transposed copy made per call (tuning.BY_ROWS_STEPS)
    by_rows = (kernel is not None and not record and N <= FEW_ROWS
               and T <= (BY_ROWS_STEPS if N == 1 else BY_ROWS_FEW))
    if panels is not None and not (kernel is not None and record):
        lease.give_back(panels[0])         # (packed for a loop that is not the compiled)
    if kernel is not None and record:      # the forward's alone (the record keeps W_hh),
        w_buf, w_hh_t = panels or leased_panels(w.w_hh, lease, w.w_hh.shape)   # in a
        # buffer of W_hh's shape, given back when the loop is done: the snapshot of W_hh
        # or backward's dW_hh, of that shape, takes it (no higher peak)
    elif kernel is not None:               # W_hh^T in panels (linalg.in_panels)
        w_hh_t = w.w_hh if by_rows else kept_panels_of(w.w_hh, lease)
    else:
        w_hh_t = None if rows and not record else t_of(w.w_hh)
    steps_kept = T if record else 1                        # inference: one buffer, reused
    store = lease.empty((steps_kept, N, fam.store * H), dt)
    if kernel is not None:                 # compiled loop (kernels.py); it adds the bias
        h0, c0 = ready(h0), (None if c0 is None else ready(c0))
        c_n = h0 if c0 is None else np.empty(c0.shape, dt)
        w_ih = []                         # recording: W_ih's snapshot taken while the
        halves.in_halves(kernel, (gx, ready(w_hh_t), NO_BIAS if bias is None else ready(bias),
                                  _or_zeros(b_rest, GH - _folded(fam, GH), dt), h0,
                                  h0 if c0 is None else c0, reverse, out, c_n, by_rows,
                                  store if record else NO_STORE, record), N, split,  # worker's
                         (lambda: w_ih.append(snapshot(lease, w.w_ih))) if record else None,
                         halves.beside(gx.nbytes))                          # half runs
        if w_buf is not None:
            lease.give_back(w_buf)        # before the snapshot below, which may take it
        rec = None
        if record:                        # per-step caches: derived if a NumPy back needs them
            kept = snapshot(lease, w.w_hh)    # W_hh as used, BPTT's loop's layout (the
            rec = DirectionRecord(out, h0, None, None, None,       # record's W_hh^T: a view)
                                  LayerWeights(w_ih[0], kept.T), gx, store, c0, kept)
        return out, out[0 if reverse else T - 1], (None if c0 is None else c_n), rec
    h_prev = lease.zeros((T, N, H_out), dt) if record and sizes is not None else None
    m_all = None if w.w_hr is None else lease.zeros((steps_kept, N, H), dt)  # before W_hr
    gh = lease.empty((N, GH), dt)                          # scratch, reused every step
    w_hr_t = None if w.w_hr is None else t_of(w.w_hr)
    folded = _folded(fam, GH)
    step, _, adds = cell_steps(fam, dt, _or_zeros(bias, GH, dt),
                               _or_zeros(b_rest, GH - folded, dt))
    if fam.with_weights is not None:                      # its step needs W_hh itself
        step, adds = fam.with_weights(w, reverse)[0], False
    if bias is not None and not adds:
        gx += bias
    caches = [None] * T if record else None
    h, c = h0, c0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        b = N if sizes is None else sizes[t]               # sequences running at step t
        if b == 0:
            continue
        if h_prev is not None:
            h_prev[t, :b] = h[:b]
        k = t if record else 0
        hb = h if b == N else h[:b]
        if rows:                                           # (b, G*H) the sequential matmul
            ghb = per_row(w.w_hh, hb, gh[:b])
        else:
            ghb = dot(hb, w_hh_t, out=gh[:b])
        if b_rest is not None and not adds:
            ghb[:, folded:] += b_rest
        target = out[t, :b] if w.w_hr is None else m_all[k, :b]
        c_new, cache = step(gx[t, :b], ghb, hb, None if c is None else c[:b], target,
                            store[k, :b])
        if record:
            caches[t] = cache
        if w.w_hr is not None:
            dot(target, w_hr_t, out=out[t, :b])         # projection to H_out
        if b == N:
            h, c = out[t], c_new
        else:                                              # rows not running keep their state
            h = np.concatenate([out[t, :b], h[b:]])
            c = None if c is None else np.concatenate([c_new, c[b:]])
    rec = None
    if record:
        kept = LayerWeights(snapshot(lease, w.w_ih), w_hh_t, None, None,
                            snapshot(lease, w.w_hr), snapshot(lease, w.w_p))
        rec = DirectionRecord(out, h0, h_prev, caches, m_all, kept, None, None, c0)
    return out, h, c, rec


def _pair_forward(fam, inp, w, bias, b_rest, h0, c0, reverse, lease, pool_out):
    """One direction of an unrecorded call on two threads (pair.py): its (out, h_n, c_n),
    or None when it runs alone here (cooling down, or another thread has the pair)."""
    T, N = inp.shape[:2]
    kernel = pair_kernel(fam)
    if kernel is None:
        return None
    f32 = np.float32
    (GH, H), G = w.w_hh.shape, fam.num_gates
    out = (lease if pool_out else PLAIN).empty((T, N, H), f32)
    h0 = ready(h0)
    c0_ = h0 if c0 is None else ready(c0)
    c_n = aligned_empty(h0.shape, f32, least=0)     # its halves meet mid-row
    folded = _folded(fam, GH)
    B = [hi - lo for lo, hi in both_halves(H)]
    args = (ready(inp.reshape(T * N, inp.shape[2])), ready(w.w_ih), ready(w.w_hh),
            _or_zeros(bias, GH, f32), _or_zeros(b_rest, GH - folded, f32), h0, c0_,
            reverse, out, c_n)
    wt = (kept_batch_halves(args[1], args[2], G, H, lease)    # a batch: each thread
          if gemm_rows(T, N, GH, H) else None)               # checks its half (pair.run)
    gx = [lease.empty((0 if wt else T * N, G * b), f32) for b in B]   # batch 1's: up front
    if wt is None and sgemm_address():                  # met in the step box (pair_step)
        done = pair_in(fam, kernel, (*args, *gx))
    else:
        done = run_pair(kernel, *args, gx, wt)
    for g in gx + list(wt or ()):                       # (kept buffers: not the lease's)
        lease.give_back(g)
    if not done:
        return None
    return out, out[0 if reverse else T - 1], (None if c0 is None else c_n)


_ASIDE = threading.local()      # per thread: the scratch of run_both's second direction
ASIDE_POOLS = weakref.WeakSet()  # those pools (tests)


def _aside(direction, d):
    """direction(d) from a lease of its own (the caller's lease is not shared between
    threads), its outputs allocated plainly; every scratch buffer back when done. The
    pool is the running thread's: the worker's, or a caller's that runs it itself while
    the worker runs another caller's (pools are not thread-safe)."""
    pool = getattr(_ASIDE, "pool", None)
    if pool is None:
        pool = _ASIDE.pool = Pool()
        ASIDE_POOLS.add(pool)
    lease = pool.lease()
    try:
        with np.errstate(**_QUIET):                     # per thread: the worker's own
            return direction(d, lease, False, True)
    finally:
        lease.release()


def _stacked(states):
    """np.stack of the per-layer copies (one: a view of its copy, ~4 us less)."""
    return states[0][None] if len(states) == 1 else np.stack(states)


def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout mask: kept elements scaled by 1 / (1 - p); p == 1 zeroes all."""
    if p >= 1:
        return np.zeros(shape, dtype=dtype)
    keep = rng.random(shape) >= p
    return (keep / (1.0 - p)).astype(dtype)


def _one_way(fam, x, weights, h0, c0, lease, reverse):
    """run_forward's common inference call (unrecorded, one direction, no lengths or
    masks): each layer through _direction_forward as below, the same bits, without the
    loop's bookkeeping for records, directions, masks and sorts (~4 of ~37 us)."""
    L, (T, N), dt, cell = len(weights), x.shape[:2], x.dtype, fam.has_cell_state
    inp, h_n, c_n = x, [], []
    for k in range(L):
        w = LayerWeights(*weights[k][0])
        H, H_out = w.w_hh.shape[0] // fam.num_gates, w.w_hh.shape[1]
        c0k = (np.zeros((N, H), dt) if c0 is None else c0[k]) if cell else None
        out, hn, cn, _ = _direction_forward(
            fam, inp, np.zeros((N, H_out), dt) if h0 is None else h0[k], c0k, w,
            *_fold_bias(fam, w), reverse, None, lease, k < L - 1, False)
        h_n.append(hn.copy())                    # hn may view a buffer reused later
        c_n.append(None if cn is None else cn.copy())
        if k > 0:
            lease.give_back(inp)                 # the layer below's output, read
        inp = out
    cache = Cache(fam, Dims(T, N, H, H_out, L, 1), dt, False, [None] * (L - 1),
                  saved=[None] * L, bias=w.b_ih is not None, reverse=reverse)
    return (inp, _stacked(h_n), _stacked(c_n) if cell else None), cache


def run_forward(mode, x, weights, h0=None, c0=None, *, dropout=0.0, training=False, rng=None,
                lengths=None, masks=None, lease=PLAIN, record=True, reverse=False):
    """``forward`` without argument checks (the layers check first); lengths: int64 array;
    masks: checked arrays or None; reverse: the one direction over reversed time."""
    fam = by_mode(mode)
    G = fam.num_gates
    L, D = len(weights), len(weights[0])
    if (not record and lengths is None and masks is None and D == 1
            and not (training and dropout > 0 and L > 1)):
        with np.errstate(**_QUIET):
            return _one_way(fam, x, weights, h0, c0, lease, reverse)
    T, N = x.shape[:2]
    w00 = LayerWeights(*weights[0][0])
    H, H_out = w00.w_hh.shape[0] // G, w00.w_hh.shape[1]
    dt = x.dtype
    perm = sizes = None
    if lengths is not None:
        perm, sizes = batch_sizes_for(lengths, T)
        x = x[:, perm]                                   # a copy, in sorted order
        h0 = None if h0 is None else h0[:, perm]
        c0 = None if c0 is None else c0[:, perm]
        zero_padding(x, sizes)                          # padding never reaches anything
        if masks is not None:
            masks = [None if m is None else m[:, perm] for m in masks]
    elif record:                                         # backward sees what forward saw
        x = np.array(x, copy=True)
        h0 = None if h0 is None else np.array(h0, copy=True)
        c0 = None if c0 is None else np.array(c0, copy=True)
    if h0 is None:
        h0 = np.zeros((L * D, N, H_out), dtype=dt)
    if fam.has_cell_state and c0 is None:
        c0 = np.zeros((L * D, N, H), dtype=dt)
    cache = Cache(fam, Dims(T, N, H, H_out, L, D), dt, record, [], perm=perm, sizes=sizes,
                  bias=w00.b_ih is not None, reverse=reverse)
    inp, h_n, c_n = x, [], []
    with np.errstate(**_QUIET):
        for k in range(L):
            outs = []
            ws = [LayerWeights(*weights[k][d]) for d in range(D)]

            def direction(d, lease_d=lease, pool_out=k < L - 1 or D == 2, alone=False):
                j = k * D + d
                return _direction_forward(
                    fam, inp, h0[j], None if c0 is None else c0[j], ws[d],
                    *_fold_bias(fam, ws[d]), d == 1 or reverse, sizes, lease_d, pool_out,
                    record, alone)
            if D == 2 and not record and sizes is None and directions_wanted(
                    fam, dt, T, N, *ws[0].w_hh.shape, ws[0].w_hr is not None):
                if enabled():
                    results = run_both(lambda: direction(0, alone=True),
                                       lambda: _aside(direction, 1))
                else:                      # set_num_threads(1): the same two, here
                    results = [direction(d, alone=True) for d in range(D)]
            else:
                results = [direction(d) for d in range(D)]
            for out, hn, cn, rec in results:
                outs.append(out)
                cache.saved.append(rec)
                h_n.append(hn.copy())                    # hn may view a buffer reused later
                c_n.append(None if cn is None else cn.copy())
            if record:
                cache.inputs.append(inp)
            elif k > 0:
                lease.give_back(inp)                     # the layer below's output, read
            inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)   # (L, N, D*H_out)
            if not record and D == 2:
                for o in outs:
                    lease.give_back(o)
            mask = None
            if k < L - 1 and masks is not None:
                mask = masks[k]
            elif k < L - 1 and training and dropout > 0:
                if rng is None:                # made only here: a fresh generator costs
                    rng = np.random.default_rng()       # ~10 us (the OS's entropy)
                mask = dropout_mask(inp.shape, dropout, rng, dt)
            cache.masks.append(mask)
            if mask is not None:
                inp = inp * mask                                     # between layers only
                if sizes is not None:
                    zero_padding(inp, sizes)
    output, h_n = inp, _stacked(h_n)
    c_n = _stacked(c_n) if fam.has_cell_state else None
    inv = None if perm is None else np.argsort(perm)
    if perm is not None:
        output, h_n = output[:, inv], h_n[:, inv]
        c_n = None if c_n is None else c_n[:, inv]
    cache.dropout_masks = [m if m is None or inv is None else m[:, inv]
                           for m in cache.masks[:-1]]
    if not record:
        cache.masks = []
    return (output, h_n, c_n), cache
