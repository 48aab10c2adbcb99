"""Backpropagation through time: the driver's record (``Cache``, from driver.run_forward)
and the upstream gradients in, every gradient out. Per direction: the BPTT time loop (the
family's compiled loop where kernels.py has one, else the NumPy loop below with the
family's back step), then dW_ih, dW_hh, dW_hr and the biases as one matmul or sum each
over all steps, and dx as one matmul. A direction no gradient reaches is skipped, as
autograd skips a branch that is not in the loss.
"""
import numpy as np

from ..errors import BackwardError
from .driver import _QUIET, _folded
from .kernels import NO_STORE, cell_steps, kernel_for, ready, step_caches
from .linalg import dot, leased_panels, per_row, per_row_wanted, transposed
from .packed import zero_padding
from . import halves
from .pair import loop_limit
from .pool import PLAIN, for_weights
from .records import LayerWeights


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


def _previous_states(rec, reverse, lease):
    """(L * N, H_out): the state each step started from, h_{t-1} (h0 at the direction's
    first step), for dW_hh = sum_t dgh_t^T h_{t-1} as one product over all steps. Without
    lengths the direction's own output shifted by one step (a buffer from ``lease``): one
    copy and one product, not a product over the other steps plus an outer product for
    the first (LSTM (100, 1, 256, 256): 1.29 -> 0.28 ms)."""
    T, N, H_out = rec.out.shape
    if rec.h_prev is not None:
        return rec.h_prev.reshape(T * N, H_out)
    prev = lease.empty(rec.out.shape, rec.out.dtype)
    if reverse:
        prev[:-1], prev[-1] = rec.out[1:], rec.h0
    else:
        prev[0], prev[1:] = rec.h0, rec.out[:-1]
    return prev.reshape(T * N, H_out)


def _direction_backward(fam, x, dout, dh, dc, has_bias, reverse, sizes, rec, lease,
                        norms=None, grads=PLAIN):
    """BPTT for one direction. dout (L, N, H_out), dh (N, H_out), dc (N, H): upstream
    gradients, each None when none reaches it. Returns dx, dh0, dc0 and the weight
    gradients (LayerWeights; dW_ih and dW_hh in buffers from ``grads``, a pool.Lease).
    norms: None, or (L, N) receiving |dloss/dh_t|."""
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
    kernel = bound = None
    rows = per_row_wanted(N, GH, H_out)
    if not absent and norms is None and rec.acts is not None and w.w_hr is None and not rows:
        kernel = kernel_for(fam, dt, N, GH, H_out, False, backward=True,
                            limit=loop_limit(True))
    split = kernel is not None and halves.wanted(fam, dt, T, N, GH, H_out, False)
    near = halves.beside(dgx_all.nbytes)          # the serial work beside the worker's half
    if kernel is not None:                                 # compiled loop (kernels.py)
        dh = np.zeros((N, H_out), dt) if dh is None else np.array(dh, dtype=dt)   # own
        if fam.has_cell_state:                                                     # copies,
            dc = np.zeros(rec.c0.shape, dt) if dc is None else np.array(dc, dtype=dt)
        w_p, panels = leased_panels(rec.w_hh.T, lease, rec.w_hh.shape)   # the products'
        #                       b, W_hh, in panels, in W_hh's shape (dW_hh takes it next)
        prev = []                 # h_{t-1} for dW_hh, copied while the worker's half runs
        halves.in_halves(kernel, (NO_STORE if dout is None else ready(dout), dout is not None,
                                  dh, dh if dc is None else dc,          # updated in place
                                  rec.acts, rec.store, rec.h0,
                                  rec.h0 if rec.c0 is None else rec.c0, ready(rec.out),
                                  panels, reverse, dgx_all,
                                  NO_STORE if dgr_all is None else dgr_all), N, split,
                         also=lambda: prev.append(_previous_states(rec, reverse, lease)),
                         near=near)
        lease.give_back(w_p)
    else:
        bound = None if fam.with_weights is None else fam.with_weights(
            LayerWeights(w.w_ih, w.w_hh.T, None, None, None, w.w_p), reverse)
        dh, dc = _bptt(fam, dout, dh, dc, rec, reverse, sizes, dgx_all, dgr_all, dh_all,
                       no_grad_rows, absent, norms, rows, None if bound is None else bound[1],
                       grads)
    GX = dgx_all.reshape(T * N, GH)
    x2 = x.reshape(T * N, x.shape[2])
    dx = np.empty(x2.shape, dt)
    dw_ih = for_weights(grads, (GH, x2.shape[1]), dt)     # all taken here: leases are not
    dw_hh = for_weights(grads, (GH, H_out), dt)           # thread-safe
    prev = prev[0] if kernel is not None else _previous_states(rec, reverse, lease)
    db = []                                                # [db_ih, db_hh] with a bias
    if split:               # the same products, on one OpenBLAS thread each (halves.py);
        m = T * N // 2      # the bias gradients' sums here, while the worker's half starts

        def here():
            np.matmul(GX[:m], w.w_ih, out=dx[:m])
            np.matmul(GX.T, x2, out=dw_ih)
            if has_bias and near:
                db.extend(_bias_grads(GX, dgr_all, F_))

        def there():
            np.matmul(GX[m:], w.w_ih, out=dx[m:])
            _dw_hh(dgx_all, dgr_all, prev, F_, dw_hh)
        halves.in_parallel(here, there)
    else:
        np.matmul(GX.T, x2, out=dw_ih)                     # one product over all steps
        _dw_hh(dgx_all, dgr_all, prev, F_, dw_hh)
        np.matmul(GX, w.w_ih, out=dx)
    if has_bias and not db:
        db.extend(_bias_grads(GX, dgr_all, F_))
    db_ih, db_hh = db if has_bias else (None, None)
    dw_p = None
    if kernel is None and bound is not None:               # what the family's back kept
        extra = bound[2]()
        if "w_hh" in extra:
            dw_hh[F_:] += extra["w_hh"]
        if db_hh is not None and "b_hh" in extra:
            db_hh[F_:] += extra["b_hh"]
        dw_p = extra.get("w_p")
    dw_hr = None
    if w.w_hr is not None:
        m_all = rec.m_all if no_grad_rows is None else np.where(no_grad_rows[..., None], 0,
                                                                 rec.m_all)
        dw_hr = dh_all.reshape(T * N, H_out).T @ m_all.reshape(T * N, w.w_hr.shape[1])
    dx = dx.reshape(T, N, w.w_ih.shape[1])
    if sizes is not None:
        zero_padding(dx, sizes)                           # 0 * non-finite weight stays out
    return dx, dh, dc, LayerWeights(dw_ih, dw_hh, db_ih, db_hh, dw_hr, dw_p)


def _bias_grads(GX, dgr_all, F_):
    """(db_ih, db_hh): the sums over all steps and rows of GX (L * N, G*H), dgx, and of
    dgr_all (L, N, G*H - F_) for b_hh's gates past the folded ones."""
    db_ih = GX.sum(axis=0)
    return db_ih, (db_ih.copy() if dgr_all is None else np.concatenate(
        [db_ih[:F_], dgr_all.reshape(GX.shape[0], dgr_all.shape[2]).sum(axis=0)]))


def _dw_hh(dgx_all, dgr_all, prev, F_, dw):
    """dW_hh into dw (G*H, H_out): sum_t dgh_t^T h_{t-1} (prev: _previous_states), dgh
    the folded gates' dgx and the others' dgr."""
    T, N, GH = dgx_all.shape
    if dgr_all is None:
        np.matmul(dgx_all.reshape(T * N, GH).T, prev, out=dw)
        return
    # both parts written in place (a concatenation of the two read 0.95 against 0.24 ms
    np.matmul(dgx_all.reshape(T * N, GH)[:, :F_].T, prev, out=dw[:F_])        # at H 256)
    np.matmul(dgr_all.reshape(T * N, GH - F_).T, prev, out=dw[F_:])


def _bptt(fam, dout, dh, dc, rec, reverse, sizes, dgx_all, dgr_all, dh_all, no_grad_rows,
          absent, norms, rows=False, back=None, lease=PLAIN):
    """The NumPy time loop of BPTT: fills dgx_all, dgr_all (and, with a projection, dh_all
    and no_grad_rows); returns the gradients of h0 and c0. rows: dgh W_hh as one BLAS
    product per row (linalg.per_row_wanted). lease: where W_hh's row-major copy comes from and goes
    back to when the loop is done, for dW_hh to take (pool.for_weights)."""
    w = rec.weights
    T, N, H_out = rec.out.shape
    dt = rec.out.dtype
    GH = w.w_hh.shape[1]
    F_ = _folded(fam, GH)
    # (G*H, H_out): a row-major copy when the loop is long enough to pay for it (BLAS
    # reads it ~20% faster than the transposed view: (64, 1024) @ (1024, 256) 138 vs 176 us)
    w_hh = w.w_hh.T if rows or T == 1 else transposed(w.w_hh, lease=lease)
    w_hh_f, w_hh_r = w_hh[:F_], w_hh[F_:]
    back = cell_steps(fam, dt)[1] if back is None else back
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
    lease.give_back(w_hh)          # free before the gradients are made (the peak: 3x)
    return dh, dc


def run_backward(cache, d_output=None, d_h_n=None, d_c_n=None, dh_norms=False, pool=None,
                 lease=None):
    """``backward`` without argument checks (the layers check first). Scratch comes from
    ``pool`` (a lease released here) or ``lease``, which the caller releases, and which
    then gives dW_ih and dW_hh their buffers too (records.backprop_call: it adds them into
    the module's gradients and gives the buffers back; fresh arrays otherwise)."""
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
    grads = PLAIN if lease is None else lease
    own = lease is None
    lease = (PLAIN if pool is None else pool.lease()) if own else lease
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
                    fam, cache.inputs[k], dout, dh, dc, cache.bias, d == 1 or cache.reverse,
                    sizes, rec, lease, norms[k][d], grads)
                if dc_d is not None:
                    dc0[j] = dc_d
                dx = dx_d if dx is None else dx + dx_d
            if dx is not None and k > 0 and cache.masks[k - 1] is not None:
                dx = dx * cache.masks[k - 1]               # through the dropout of layer k-1
            d_inp = dx
    if own:
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
                        None if b is None else b.copy(), z(w.w_hr), z(w.w_p))
