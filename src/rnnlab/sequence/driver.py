"""The sequence driver: any cell family over time, layers, directions, dropout and lengths.

Pure functions, no state. ``forward`` returns the outputs and a record (``Cache``);
``backward`` takes that record and the upstream gradients and returns every gradient.
Arrays are time-major: x is (L, N, H_in). The layer classes handle batch_first, unbatched
input and argument checks, then call ``run_forward`` / ``run_backward`` directly; the
public ``forward`` / ``backward`` check their arguments first.

``weights`` is a list over layers of a list over directions of ``LayerWeights``
(or plain 5-tuples in that order: w_ih, w_hh, b_ih, b_hh, w_hr; None where absent).

Cost design: the input projection of all steps is one matmul per layer and direction;
dW_ih, dW_hh (and dW_hr) are one matmul each after the time loop, from the per-step
pre-activation gradients stored during BPTT. Only h @ W_hh^T and dgh @ W_hh are
sequential. Without recording (inference), no per-step caches are kept at all.

Guarantees kept here: positions past a sequence's length never influence any result
(the recorded input is zeroed there); backward uses copies of exactly the input, states
and weights the forward saw; a direction that receives no upstream gradient is skipped,
as autograd skips a branch that is not in the loss.
"""
import numpy as np

from ..cells import by_mode
from ..checks import float_array, gradient_array, to_numpy
from ..errors import BackwardError, ShapeError
from ..tuning import BLAS_ROWS, FEW_ROWS
from .kernels import NO_STORE, cell_steps, kernel_for, ready, step_caches
from .linalg import dot, per_row, transposed
from .packed import batch_sizes_for, check_lengths
from .pool import PLAIN
from .records import Cache, Dims, DirectionRecord, LayerWeights

_QUIET = dict(over="ignore", invalid="ignore", under="ignore", divide="ignore")


def _family(mode):
    return mode if hasattr(mode, "step") else by_mode(mode)


def _folded(fam, GH):
    """Rows of a (G*H)-row gate block where x W_i + b_i and h W_h + b_h simply add: their
    b_hh folds into the input projection and dgh == dgx there."""
    return fam.fold * (GH // fam.num_gates)


def _fold_bias(fam, w):
    """(bias for x W_ih^T, rest of b_hh for h W_hh^T): b_hh of the first ``fold`` gates is
    added to the input projection once; the rest (GRU's b_hn, inside r * (...)) stays with
    the hidden part. (None, None) without bias."""
    w_hh, b_ih, b_hh = w[1], w[2], w[3]
    if b_ih is None:
        return None, None
    folded = _folded(fam, w_hh.shape[0])
    bias = b_ih.copy()
    bias[:folded] += b_hh[:folded]
    return bias, (b_hh[folded:] if folded < w_hh.shape[0] else None)


def _direction_forward(fam, gx, h0, c0, w, bias, b_rest, reverse, sizes, lease, pool_out,
                       record):
    """Run one cell over time in one direction.

    gx (L, N, G*H): input projections x W_ih^T; the steps keep their activations in it.
    bias: b_ih with the foldable part of b_hh, added to gx (by the compiled steps as they
    go, else here at once); b_rest: the rest of b_hh, added to h W_hh^T. Returns out
    (L, N, H_out), h_n, c_n and, when recording, the DirectionRecord.
    """
    T, N, GH = gx.shape
    H_out = h0.shape[1]
    H = H_out if w.w_hr is None else w.w_hr.shape[1]
    dt = gx.dtype
    new = lease if pool_out else PLAIN
    out = (new.empty if sizes is None else new.zeros)((T, N, H_out), dt)   # padding: 0
    # (H_out, G*H) row-major, what the recurrent matmul reads fastest: a copy (also the
    # record's snapshot, whatever the parameter's layout) when recording or when there are
    # steps enough to pay for it; one unrecorded step reads the transposed view
    if record:
        t_of = transposed
    else:
        t_of = (lambda w_: transposed(w_, copy=False)) if T > 1 else (lambda w_: w_.T)
    # a few rows and a large W_hh: h W_hh^T as one BLAS product per row from W_hh itself,
    # which OpenBLAS splits over its threads (linalg.BLAS_ROWS), not the compiled loop;
    # the record keeps W_hh^T, which BPTT's products per row read fastest
    rows = _few_rows(N, GH, H_out)
    w_hh_t = None if rows and not record else t_of(w.w_hh)
    steps_kept = T if record else 1                        # inference: one buffer, reused
    store = lease.empty((steps_kept, N, fam.store * H), dt)
    kernel = None if sizes is not None or rows else kernel_for(fam, dt, N, GH, H_out,
                                                               w.w_hr is not None)
    zeros = (lambda b, n: np.zeros(n, dt) if b is None else np.ascontiguousarray(b))
    if kernel is not None:                                 # compiled loop (kernels.py)
        if bias is not None:
            gx += bias
        h0, c0 = ready(h0), (None if c0 is None else ready(c0))
        c_n = h0 if c0 is None else np.empty(c0.shape, dt)
        kernel(gx, ready(w_hh_t), zeros(b_rest, GH - _folded(fam, GH)), h0,
               h0 if c0 is None else c0, reverse, out, c_n,
               False, store if record else NO_STORE, record)
        rec = None
        if record:                        # per-step caches: derived if a NumPy back needs them
            rec = DirectionRecord(out, h0, None, None, None, LayerWeights(w.w_ih.copy(), w_hh_t),
                                  gx, store, c0)
        return out, out[0 if reverse else T - 1], (None if c0 is None else c_n), rec
    h_prev = lease.zeros((T, N, H_out), dt) if record and sizes is not None else None
    m_all = None if w.w_hr is None else lease.zeros((steps_kept, N, H), dt)  # before W_hr
    gh = lease.empty((N, GH), dt)                          # scratch, reused every step
    w_hr_t = None if w.w_hr is None else t_of(w.w_hr)
    folded = _folded(fam, GH)
    step, _, adds = cell_steps(fam, dt, zeros(bias, GH), zeros(b_rest, GH - folded))
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
        kept = LayerWeights(w.w_ih.copy(), w_hh_t, None, None,
                            None if w.w_hr is None else w.w_hr.copy())
        rec = DirectionRecord(out, h0, h_prev, caches, m_all, kept, None, None, c0)
    return out, h, c, rec


def _few_rows(N, GH, H_out):
    """Whether h W_hh^T (and BPTT's dgh W_hh) is one BLAS matrix-vector product per row
    (N rows, W_hh (G*H, H_out)): a few rows and a W_hh that OpenBLAS splits over its
    threads (linalg.BLAS_ROWS; a 1-row LSTM at H = 512: 22.7 -> ~5.6 ms for 100 steps)."""
    return N <= FEW_ROWS and GH * H_out >= BLAS_ROWS


def _starting_rows(t, T, b, sizes, reverse):
    """How many of the b rows running at step t have their own last step here (BPTT
    starts there). The backward loop of the reverse direction starts at t = 0 for all."""
    if reverse:
        return b if t == 0 else 0
    later = 0 if t == T - 1 else (b if sizes is None else sizes[t + 1])
    return b - later


def _back(back, dh_t, dc, cache, dgx, dgr, starting):
    """The cell's back for the rows running at this step. When no gradient reaches h from
    outside (``starting`` rows, at the end of the sorted block, have their last step here
    and neither output nor final h is in the loss), those rows call back with
    dh_new=None, so no 0 * inf / 0 * NaN enters where autograd has no branch at all."""
    if starting == 0:                                      # the usual case
        return back(dh_t, dc, cache, dgx, dgr)
    b = dh_t.shape[0]
    parts = [(slice(0, b - starting), dh_t[:b - starting]), (slice(b - starting, b), None)]
    outs = [back(dh, None if dc is None else dc[r], _rows(cache, r), dgx[r],
                 None if dgr is None else dgr[r])
            for r, dh in parts if r.stop > r.start]
    if len(outs) == 1:
        return outs[0]
    return tuple(_join(a, c) for a, c in zip(*outs))


def _join(a, c):
    """Two row blocks of a back() result into one (None: nothing there)."""
    if a is None and c is None:
        return None
    return np.concatenate([np.zeros_like(c) if a is None else a,
                           np.zeros_like(a) if c is None else c])


def _rows(cache, rows):
    """A step's cache restricted to some rows (arrays with the batch first)."""
    if isinstance(cache, tuple):
        return tuple(_rows(a, rows) for a in cache)
    return None if cache is None else cache[rows]


def _hidden_matmul(G, rec, reverse):
    """sum_t G_t^T h_{t-1} for G (L, N, k): one matmul over all steps. Without lengths
    h_{t-1} is the direction's own output shifted by one step (h0 at its first step)."""
    T, N, H_out = rec.out.shape
    k = G.shape[2]
    if rec.h_prev is not None:
        return G.reshape(T * N, k).T @ rec.h_prev.reshape(T * N, H_out)
    first, rest, prev = (T - 1, G[:-1], rec.out[1:]) if reverse else (0, G[1:], rec.out[:-1])
    return rest.reshape(-1, k).T @ prev.reshape(-1, H_out) + G[first].T @ rec.h0


def _direction_backward(fam, x, dout, dh, dc, has_bias, reverse, sizes, rec, lease,
                        norms=None):
    """BPTT for one direction. dout (L, N, H_out), dh (N, H_out), dc (N, H): upstream
    gradients, each None when none reaches it. Returns dx, dh0, dc0 and the weight
    gradients (LayerWeights). norms: None, or (L, N) receiving |dloss/dh_t|."""
    w = rec.weights
    T, N, H_out = rec.out.shape
    GH = w.w_hh.shape[1]                                   # w_hh is kept as W_hh^T
    F_ = _folded(fam, GH)                                  # rows where dgh == dgx
    dt = rec.out.dtype
    alloc = lease.empty if sizes is None else lease.zeros  # padded rows get 0
    dgx_all = alloc((T, N, GH), dt)                        # d(x W_ih^T + b_ih) per step
    dgr_all = None if F_ == GH else alloc((T, N, GH - F_), dt)   # dgh of the other gates
    dh_all = None if w.w_hr is None else alloc((T, N, H_out), dt)
    absent = dh is None and dout is None       # nothing reaches h at a row's own last step
    no_grad_rows = np.zeros((T, N), bool) if absent and w.w_hr is not None else None
    kernel = None
    rows = _few_rows(N, GH, H_out)
    if not absent and norms is None and rec.acts is not None and w.w_hr is None and not rows:
        kernel = kernel_for(fam, dt, N, GH, H_out, False, backward=True)
    if kernel is not None:                                 # compiled loop (kernels.py)
        dh = np.zeros((N, H_out), dt) if dh is None else np.array(dh, dtype=dt)   # own
        if fam.has_cell_state:                                                     # copies,
            dc = np.zeros(rec.c0.shape, dt) if dc is None else np.array(dc, dtype=dt)
        kernel(NO_STORE if dout is None else ready(dout), dout is not None, dh,   # updated
               dh if dc is None else dc, rec.acts, rec.store, rec.h0,          # in place
               rec.h0 if rec.c0 is None else rec.c0, ready(rec.out), transposed(w.w_hh),
               reverse, dgx_all, NO_STORE if dgr_all is None else dgr_all)
    else:
        dh, dc = _bptt(fam, dout, dh, dc, rec, reverse, sizes, dgx_all, dgr_all, dh_all,
                       no_grad_rows, absent, norms, rows)
    GX = dgx_all.reshape(T * N, GH)
    dw_ih = GX.T @ x.reshape(T * N, x.shape[2])            # one matmul for all steps
    if dgr_all is None:
        dw_hh = _hidden_matmul(dgx_all, rec, reverse)
    else:
        dw_hh = np.concatenate([_hidden_matmul(dgx_all[:, :, :F_], rec, reverse),
                                _hidden_matmul(dgr_all, rec, reverse)])
    db_ih = db_hh = None
    if has_bias:
        db_ih = GX.sum(axis=0)
        db_hh = db_ih.copy() if dgr_all is None else np.concatenate(
            [db_ih[:F_], dgr_all.reshape(T * N, GH - F_).sum(axis=0)])
    dw_hr = None
    if w.w_hr is not None:
        m_all = rec.m_all if no_grad_rows is None else np.where(no_grad_rows[..., None], 0,
                                                                 rec.m_all)
        dw_hr = dh_all.reshape(T * N, H_out).T @ m_all.reshape(T * N, w.w_hr.shape[1])
    dx = (GX @ w.w_ih).reshape(T, N, w.w_ih.shape[1])
    if sizes is not None:
        _zero_padding(dx, sizes)                           # 0 * non-finite weight stays out
    return dx, dh, dc, LayerWeights(dw_ih, dw_hh, db_ih, db_hh, dw_hr)


def _bptt(fam, dout, dh, dc, rec, reverse, sizes, dgx_all, dgr_all, dh_all, no_grad_rows,
          absent, norms, rows=False):
    """The NumPy time loop of BPTT: fills dgx_all, dgr_all (and, with a projection, dh_all
    and no_grad_rows); returns the gradients of h0 and c0. rows: dgh W_hh as one BLAS
    product per row (_few_rows)."""
    w = rec.weights
    T, N, H_out = rec.out.shape
    dt = rec.out.dtype
    GH = w.w_hh.shape[1]
    F_ = _folded(fam, GH)
    # (G*H, H_out): a row-major copy when the loop is long enough to pay for it (BLAS
    # reads it ~20% faster than the transposed view: (64, 1024) @ (1024, 256) 138 vs 176 us)
    w_hh = w.w_hh.T if rows or T == 1 else transposed(w.w_hh)
    w_hh_f, w_hh_r = w_hh[:F_], w_hh[F_:]
    back = cell_steps(fam, dt)[1]
    caches = rec.caches if rec.caches is not None else step_caches(     # compiled forward
        fam, rec.acts, rec.store, rec.out, rec.h0, rec.c0, reverse)
    if dh is None:
        dh = np.zeros((N, H_out), dtype=dt)                # 0 + g == g exactly: no 0 * inf
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        b = N if sizes is None else sizes[t]
        if b == 0:
            continue
        dh_t = dh[:b] if dout is None else dh[:b] + dout[t, :b]   # from the future + output
        if norms is not None:
            norms[t, :b] = np.linalg.norm(dh_t, axis=1)
        if w.w_hr is not None:
            dh_all[t, :b] = dh_t
            dh_t = dot(dh_t, w.w_hr)                       # through h = m W_hr^T
        dgx = dgx_all[t, :b]
        dgr = None if dgr_all is None else dgr_all[t, :b]
        first = 0 if not absent else _starting_rows(t, T, b, sizes, reverse)
        if first and w.w_hr is not None:
            no_grad_rows[t, b - first:b] = True
        dh_direct, dc_prev = _back(back, dh_t, None if dc is None else dc[:b], caches[t],
                                   dgx, dgr, first)
        if rows:                                           # the sequential matmul
            dgh = dgx if dgr is None else np.concatenate([dgx[:, :F_], dgr], axis=1)
            dh_new = per_row(w.w_hh, dgh, np.empty((b, H_out), dt))     # W_hh^T dgh[n]
        elif dgr is None:
            dh_new = dot(dgx, w_hh)
        else:                                              # GRU: dgh = [dgx_rz, dgr]
            dh_new = dgx[:, :F_] @ w_hh_f                  # (column slices: np.dot would
            dh_new += dgr @ w_hh_r                         # copy them, matmul reads them)
        if dh_direct is not None:
            dh_new += dh_direct
        if b == N:
            dh, dc = dh_new, dc_prev
        else:                                              # rows not running pass dh through
            dh = np.concatenate([dh_new, dh[b:]])
            if dc_prev is not None:
                rest = np.zeros((N - b, dc_prev.shape[1]), dt) if dc is None else dc[b:]
                dc = np.concatenate([dc_prev, rest])
    return dh, dc


def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout mask: kept elements scaled by 1 / (1 - p); p == 1 zeroes all."""
    if p >= 1:
        return np.zeros(shape, dtype=dtype)
    keep = rng.random(shape) >= p
    return (keep / (1.0 - p)).astype(dtype)


def _zero_padding(a, sizes):
    """Zero a (L, N, F) array (sorted batch order) past each sequence's length."""
    for t, b in enumerate(sizes):
        if b < a.shape[1]:
            a[t, b:] = 0


def run_forward(mode, x, weights, h0=None, c0=None, *, dropout=0.0, training=False, rng=None,
                lengths=None, masks=None, lease=PLAIN, record=True):
    """``forward`` without argument checks (the layers check first). lengths: int64
    array; masks: checked arrays or None."""
    fam = _family(mode)
    G = fam.num_gates
    L, D = len(weights), len(weights[0])
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
        _zero_padding(x, sizes)                          # padding never reaches anything
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
    rng = np.random.default_rng() if rng is None else rng
    cache = Cache(fam, Dims(T, N, H, H_out, L, D), dt, record, [], perm=perm, sizes=sizes,
                  bias=w00.b_ih is not None)
    inp, h_n, c_n = x, [], []
    with np.errstate(**_QUIET):
        for k in range(L):
            outs = []
            for d in range(D):
                w = LayerWeights(*weights[k][d])
                gx = np.matmul(inp.reshape(T * N, inp.shape[2]), w.w_ih.T,       # all steps
                               out=lease.empty((T * N, w.w_ih.shape[0]), dt))
                bias, b_rest = _fold_bias(fam, w)
                j = k * D + d
                out, hn, cn, rec = _direction_forward(
                    fam, gx.reshape(T, N, G * H), h0[j], None if c0 is None else c0[j], w,
                    bias, b_rest, d == 1, sizes, lease, k < L - 1 or D == 2, record)
                outs.append(out)
                cache.saved.append(rec)
                h_n.append(hn.copy())                    # hn may view a buffer reused later
                c_n.append(None if cn is None else cn.copy())
                if not record:
                    lease.give_back(gx)                  # inference: scratch done
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
                mask = dropout_mask(inp.shape, dropout, rng, dt)
            cache.masks.append(mask)
            if mask is not None:
                inp = inp * mask                                     # between layers only
                if sizes is not None:
                    _zero_padding(inp, sizes)
    output, h_n = inp, np.stack(h_n)
    c_n = np.stack(c_n) if fam.has_cell_state else None
    inv = None if perm is None else np.argsort(perm)
    if perm is not None:
        output, h_n = output[:, inv], h_n[:, inv]
        c_n = None if c_n is None else c_n[:, inv]
    cache.dropout_masks = [m if m is None or inv is None else m[:, inv]
                           for m in cache.masks[:-1]]
    if not record:
        cache.masks = []
    return (output, h_n, c_n), cache


def run_backward(cache, d_output=None, d_h_n=None, d_c_n=None, dh_norms=False, pool=None):
    """``backward`` without argument checks (the layers check first)."""
    if not cache.recorded:
        raise BackwardError("this forward call was made without recording (rnnlab.no_grad() "
                            "or eval mode), so it has nothing to backpropagate through; run "
                            "the forward in training mode or inside rnnlab.enable_grad()")
    fam, sizes, perm = cache.family, cache.sizes, cache.perm
    T, N, H, H_out, L, D = (getattr(cache.dims, a) for a in ("T", "N", "H", "H_out", "L", "D"))
    dt = cache.dtype
    if perm is not None:                                   # into the forward's sorted order
        d_output = None if d_output is None else d_output[:, perm]
        d_h_n = None if d_h_n is None else d_h_n[:, perm]
        d_c_n = None if d_c_n is None else d_c_n[:, perm]
    dh0 = np.zeros((L * D, N, H_out), dtype=dt)
    dc0 = np.zeros((L * D, N, H), dtype=dt) if fam.has_cell_state else None
    dweights = [[None] * D for _ in range(L)]
    norms = [[np.zeros((T, N)) if dh_norms else None for _ in range(D)] for _ in range(L)]
    d_inp = d_output
    lease = PLAIN if pool is None else pool.lease()
    with np.errstate(**_QUIET):
        for k in range(L - 1, -1, -1):
            dx = None
            for d in range(D):
                j = k * D + d
                rec = cache.saved[j]
                dout = None if d_inp is None else d_inp[:, :, d * H_out:(d + 1) * H_out]
                dh = None if d_h_n is None else d_h_n[j]
                dc = None if d_c_n is None else d_c_n[j]
                if dout is None and dh is None and dc is None:      # no gradient reaches it
                    dweights[k][d] = _zeros_like_weights(rec.weights, cache.bias, dt)
                    continue
                dx_d, dh0[j], dc_d, dweights[k][d] = _direction_backward(
                    fam, cache.inputs[k], dout, dh, dc, cache.bias, d == 1, sizes, rec, lease,
                    norms[k][d])
                if dc_d is not None:
                    dc0[j] = dc_d
                dx = dx_d if dx is None else dx + dx_d
            if dx is not None and k > 0 and cache.masks[k - 1] is not None:
                dx = dx * cache.masks[k - 1]               # through the dropout of layer k-1
            d_inp = dx
    lease.release()
    if d_inp is None:
        d_inp = np.zeros(cache.inputs[0].shape, dtype=dt)
    if perm is not None:
        inv = np.argsort(perm)
        d_inp, dh0 = d_inp[:, inv], dh0[:, inv]
        dc0 = None if dc0 is None else dc0[:, inv]
    result = dict(dx=d_inp, dh0=dh0, dc0=dc0, dweights=dweights)
    if dh_norms:
        inv = slice(None) if perm is None else np.argsort(perm)
        result["dh_norms"] = [[n[:, inv] for n in layer] for layer in norms]
    return result


def _zeros_like_weights(w, has_bias, dt):
    GH = w.w_hh.shape[1]
    z = (lambda a: None if a is None else np.zeros(a.shape, dt))
    b = np.zeros(GH, dt) if has_bias else None
    return LayerWeights(z(w.w_ih), np.zeros((GH, w.w_hh.shape[0]), dt), b,
                        None if b is None else b.copy(), z(w.w_hr))


# -- the public, checked entry points ---------------------------------------------------
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
            if not isinstance(w, (list, tuple)) or not 2 <= len(w) <= 5:
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
                    "w_hr": (H_out, H)}
            for name, arr in w._asdict().items():
                if arr is not None and arr.shape != want[name]:
                    raise ShapeError(f"weights[{k}][{d}].{name}: expected shape {want[name]}, "
                                     f"got {arr.shape}")
            if (w.b_ih is None) != (w.b_hh is None) or (w.w_hr is None) != (H_out == H):
                raise ShapeError(f"weights[{k}][{d}]: give both biases or neither, and w_hr "
                                 "exactly when H_out differs from H")
    return out


def forward(mode, x, weights, h0=None, c0=None, *, dropout=0.0, training=False, rng=None,
            lengths=None, masks=None, lease=PLAIN, record=True):
    """Run a (multi-layer, possibly bidirectional) recurrent network.

    mode: a family's mode string ("RNN_TANH", "RNN_RELU", "GRU", "LSTM") or a Family.
    x: (L, N, H_in). h0: (num_layers * D, N, H_out) or None (zeros). c0 (LSTM only):
    (num_layers * D, N, H) or None. lengths: None or N ints in 1..L (packed semantics:
    each sequence stops at its own length, the reverse direction starts at its own last
    element, outputs past the length are 0; values there are never read).
    masks: None, or one array (or None: no dropout) per layer but the last, shaped
    (L, N, D * H_out), used as the dropout masks (already scaled by 1 / (1 - p)) instead
    of drawing them with ``rng``; ``cache.dropout_masks`` holds the masks a call used.
    lease: where the internal buffers come from (rnnlab.sequence.pool); the caller releases
    it once the record is no longer needed. record=False keeps nothing for backward.
    Returns ``(output, h_n, c_n), cache`` with output (L, N, D * H_out) and c_n None
    unless the family has a cell state.
    """
    fam = _family(mode)
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
    return run_forward(fam, x, weights, h0, c0, dropout=dropout, training=training, rng=rng,
                       lengths=lengths, masks=masks, lease=lease, record=record)


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
            m = gradient_array(m, shape, dtype, "dropout mask")
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
