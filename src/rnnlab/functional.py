"""The sequence driver: any cell family over time, layers, directions, dropout and lengths.

Pure functions, no state. ``forward`` returns the outputs and a cache; ``backward``
takes that cache and the upstream gradients and returns every gradient.

Arrays are time-major: x is (L, N, H_in). The module classes in rnnlab handle
batch_first, unbatched input and validation, then call these functions.

``weights`` is a list over layers of a list over directions of tuples
``(w_ih, w_hh, b_ih, b_hh, w_hr)``; b_ih, b_hh are None without bias, w_hr is None
without projection (LSTM proj_size only). Shapes follow torch.nn:
w_ih (G*H, H_in or D*H_out), w_hh (G*H, H_out), b_* (G*H,), w_hr (H_out, H).

Cost design: the input projection of all steps is one matmul per layer and direction;
the weight gradients dW_ih, dW_hh (and dW_hr) are one matmul each after the time loop,
from the per-step pre-activation gradients stored during BPTT. Only h @ W_hh^T and
dgh @ W_hh are sequential.
"""
import numpy as np

from . import gru, lstm, rnn
from ._pool import PLAIN

#: mode -> the cell module's (step, back, GATES, FOLD, STORE); the contract is in rnn.py.
CELLS = {
    "RNN_TANH": (rnn.step_tanh, rnn.back_tanh, rnn.GATES, rnn.FOLD, rnn.STORE),
    "RNN_RELU": (rnn.step_relu, rnn.back_relu, rnn.GATES, rnn.FOLD, rnn.STORE),
    "GRU": (gru.step, gru.back, gru.GATES, gru.FOLD, gru.STORE),
    "LSTM": (lstm.step, lstm.back, lstm.GATES, lstm.FOLD, lstm.STORE),
}

_QUIET = dict(over="ignore", invalid="ignore", under="ignore", divide="ignore")


def _folded_rows(cell, GH):
    """Rows of the gate block where gx and gh simply add (b_hh folded, dgh == dgx)."""
    return cell[3] * (GH // cell[2])


def batch_sizes_for(lengths, T):
    """Sort a batch by length, longest first. Returns (perm, batch_sizes):
    x[:, perm] puts the sequences in that order, and batch_sizes[t] is how many of them
    are still running at step t (a prefix of the sorted batch, as in a PackedSequence)."""
    lengths = np.asarray(lengths)
    perm = np.argsort(-lengths, kind="stable")
    sizes = (lengths[perm][None, :] > np.arange(T)[:, None]).sum(axis=1)
    return perm, sizes


def _direction_forward(cell, gx, h0, c0, w_hh, b_rest, w_hr, reverse, batch_sizes, lease,
                       pool_out):
    """Run one cell over time in one direction.

    gx (L, N, G*H): input projections with the foldable part of b_hh already added; the
    steps keep their activations in it. b_rest: the rest of b_hh, added to h W_hh^T.
    Buffers come from ``lease``; ``out`` too when pool_out (it is not handed to the user).
    Returns out (L, N, H_out), h_n, c_n and what the backward needs.
    """
    step, n_store = cell[0], cell[4]
    T, N, GH = gx.shape
    H_out = h0.shape[1]
    H = H_out if w_hr is None else w_hr.shape[1]
    dt = gx.dtype
    new = lease if pool_out else PLAIN
    out = (new.empty if batch_sizes is None else new.zeros)((T, N, H_out), dt)  # padding: 0
    h_prev = None if batch_sizes is None else lease.empty((T, N, H_out), dt)
    m_all = None if w_hr is None else lease.zeros((T, N, H), dt)      # h before projection
    store = lease.empty((T, N, n_store * H), dt)               # what the steps keep
    gh = lease.empty((N, GH), dt)                              # scratch, reused every step
    w_hh_t = np.ascontiguousarray(w_hh.T)                      # (H_out, G*H): faster in BLAS
    w_hr_t = None if w_hr is None else np.ascontiguousarray(w_hr.T)
    folded = _folded_rows(cell, GH)
    caches = [None] * T
    h, c = h0, c0
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        b = N if batch_sizes is None else batch_sizes[t]       # sequences running at step t
        if h_prev is not None:
            h_prev[t] = h
        if b == 0:
            continue
        hb = h if b == N else h[:b]
        ghb = np.matmul(hb, w_hh_t, out=gh[:b])                # (b, G*H) the sequential matmul
        if b_rest is not None:
            ghb[:, folded:] += b_rest
        target = out[t, :b] if w_hr is None else m_all[t, :b]
        c_new, caches[t] = step(gx[t, :b], ghb, hb, None if c is None else c[:b], target,
                                store[t, :b])
        if w_hr is not None:
            np.matmul(target, w_hr_t, out=out[t, :b])          # projection to H_out
        if b == N:
            h, c = out[t], c_new
        else:                                                  # finished / not started rows keep their state
            h = np.concatenate([out[t, :b], h[b:]])
            c = None if c is None else np.concatenate([c_new, c[b:]])
    return out, h, c, (out, h0, h_prev, caches, m_all)


def _hidden_matmul(G, saved, reverse):
    """sum_t G_t^T h_{t-1} for G (L, N, k): one matmul over all steps. Without lengths
    h_{t-1} is the direction's own output shifted by one step (h0 at its first step)."""
    out, h0, h_prev, _, _ = saved
    T, N, H_out = out.shape
    k = G.shape[2]
    if h_prev is not None:
        return G.reshape(T * N, k).T @ h_prev.reshape(T * N, H_out)
    first, rest, prev = (T - 1, G[:-1], out[1:]) if reverse else (0, G[1:], out[:-1])
    return rest.reshape(-1, k).T @ prev.reshape(-1, H_out) + G[first].T @ h0


def _direction_backward(cell, x, dout, dh, dc, w, reverse, batch_sizes, saved, lease,
                        norms=None):
    """BPTT for one direction. dout (L, N, H_out) or None; dh, dc: gradients of the final
    state (dc None only for cells without c). Returns dx, dh0, dc0, dweights.
    norms: None, or an (L, N) array that receives |dloss/dh_t| per step and sequence."""
    back = cell[1]
    w_ih, w_hh, b_ih, b_hh, w_hr = w
    out, _, _, caches, m_all = saved
    T, N, H_out = out.shape
    GH = w_hh.shape[0]
    F_ = _folded_rows(cell, GH)                                # rows where dgh == dgx
    dt = out.dtype
    alloc = lease.empty if batch_sizes is None else lease.zeros  # padded rows get 0
    dgx_all = alloc((T, N, GH), dt)                            # d(x W_ih^T + b_ih) per step
    dgr_all = None if F_ == GH else alloc((T, N, GH - F_), dt)   # dgh of the other gates
    w_hh_f, w_hh_r = w_hh[:F_], w_hh[F_:]
    dh_all = None if w_hr is None else alloc((T, N, H_out), dt)
    for t in (range(T) if reverse else range(T - 1, -1, -1)):
        b = N if batch_sizes is None else batch_sizes[t]
        if b == 0:
            continue
        dh_t = dh[:b] if dout is None else dh[:b] + dout[t, :b]   # from the future + from output
        if norms is not None:
            norms[t, :b] = np.linalg.norm(dh_t, axis=1)
        if w_hr is not None:
            dh_all[t, :b] = dh_t
            dh_t = dh_t @ w_hr                                    # through h = m W_hr^T
        dgx = dgx_all[t, :b]
        dgr = None if dgr_all is None else dgr_all[t, :b]
        dh_direct, dc_prev = back(dh_t, None if dc is None else dc[:b], caches[t], dgx, dgr)
        if dgr is None:
            dh_new = dgx @ w_hh                                   # the sequential matmul
        else:                                                     # GRU: dgh = [dgx_rz, dgr]
            dh_new = dgx[:, :F_] @ w_hh_f
            dh_new += dgr @ w_hh_r
        if dh_direct is not None:
            dh_new += dh_direct
        if b == N:
            dh, dc = dh_new, dc_prev
        else:                                                     # rows not running pass dh through
            dh = np.concatenate([dh_new, dh[b:]])
            dc = None if dc is None else np.concatenate([dc_prev, dc[b:]])
    GX = dgx_all.reshape(T * N, GH)
    dw_ih = GX.T @ x.reshape(T * N, x.shape[2])                  # one matmul for all steps
    if dgr_all is None:
        dw_hh = _hidden_matmul(dgx_all, saved, reverse)
    else:
        dw_hh = np.concatenate([_hidden_matmul(dgx_all[:, :, :F_], saved, reverse),
                                _hidden_matmul(dgr_all, saved, reverse)])
    db_ih = db_hh = None
    if b_ih is not None:
        db_ih = GX.sum(axis=0)
        db_hh = db_ih.copy() if dgr_all is None else np.concatenate(
            [db_ih[:F_], dgr_all.reshape(T * N, GH - F_).sum(axis=0)])
    dw_hr = None if w_hr is None else dh_all.reshape(T * N, H_out).T @ m_all.reshape(T * N, w_hr.shape[1])
    dx = (GX @ w_ih).reshape(T, N, w_ih.shape[1])
    return dx, dh, dc, (dw_ih, dw_hh, db_ih, db_hh, dw_hr)


def forward(mode, x, weights, h0=None, c0=None, *, dropout=0.0, training=False, rng=None,
            lengths=None, masks=None, lease=PLAIN):
    """Run a (multi-layer, possibly bidirectional) recurrent network.

    x: (L, N, H_in). h0: (num_layers * D, N, H_out) or None (zeros). c0 (LSTM only):
    (num_layers * D, N, H) or None. lengths: None or N ints in 1..L (packed semantics:
    each sequence stops at its own length, the reverse direction starts at its own last
    element, outputs past the length are 0).
    masks: None, or one array (or None: no dropout) per layer but the last, shaped
    (L, N, D * H_out), used as the dropout masks (already scaled by 1 / (1 - p)) instead
    of drawing them with ``rng``; ``cache["dropout_masks"]`` holds the masks a call used.
    lease: where the internal buffers come from (rnnlab._pool); the caller releases it
    once the cache is no longer needed. Default: plain new arrays.
    Returns ``(output, h_n, c_n), cache`` with output (L, N, D * H_out) and c_n None
    unless mode == "LSTM".
    """
    cell = CELLS[mode]
    G = cell[2]
    L = len(weights)
    D = len(weights[0])
    T, N = x.shape[:2]
    H = weights[0][0][1].shape[0] // G
    H_out = weights[0][0][1].shape[1]
    dt = x.dtype
    is_lstm = mode == "LSTM"
    if h0 is None:
        h0 = np.zeros((L * D, N, H_out), dtype=dt)
    if is_lstm and c0 is None:
        c0 = np.zeros((L * D, N, H), dtype=dt)
    perm = sizes = None
    if lengths is not None:
        perm, sizes = batch_sizes_for(lengths, T)
        x, h0 = x[:, perm], h0[:, perm]
        c0 = None if c0 is None else c0[:, perm]
    rng = np.random.default_rng() if rng is None else rng
    given_masks = None
    if masks is not None:
        if len(masks) != L - 1:
            raise ValueError(f"dropout masks: expected {L - 1} arrays (one per layer but the "
                             f"last), got {len(masks)}")
        given_masks = [None if m is None else np.asarray(m, dtype=dt) for m in masks]
        for m in given_masks:
            if m is not None and m.shape != (T, N, D * H_out):
                raise ValueError(f"dropout masks: expected shape {(T, N, D * H_out)} "
                                 f"(time-major), got {m.shape}")
        if perm is not None:
            given_masks = [None if m is None else m[:, perm] for m in given_masks]
    inputs, saved, masks, h_n, c_n = [], [], [], [], []
    inp = x
    with np.errstate(**_QUIET):
        for k in range(L):
            outs = []
            for d in range(D):
                w_ih, w_hh, b_ih, b_hh, w_hr = weights[k][d]
                gx = np.matmul(inp.reshape(T * N, inp.shape[2]), w_ih.T,       # all steps at once
                               out=lease.empty((T * N, w_ih.shape[0]), dt))
                b_rest = None
                if b_ih is not None:
                    bias = b_ih.copy()
                    folded = _folded_rows(cell, G * H)
                    bias[:folded] += b_hh[:folded]                              # fold b_hh once
                    gx += bias
                    b_rest = b_hh[folded:] if folded < G * H else None
                gx = gx.reshape(T, N, w_ih.shape[0])
                j = k * D + d
                out, hn, cn, s = _direction_forward(
                    cell, gx, h0[j], None if c0 is None else c0[j], w_hh, b_rest, w_hr,
                    d == 1, sizes, lease, pool_out=k < L - 1 or D == 2)
                outs.append(out)
                saved.append(s)
                h_n.append(hn)
                c_n.append(cn)
            inputs.append(inp)
            inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)   # (L, N, D*H_out)
            mask = None
            if k < L - 1 and given_masks is not None:
                mask = given_masks[k]
            elif k < L - 1 and training and dropout > 0:
                mask = dropout_mask(inp.shape, dropout, rng, dt)
            masks.append(mask)
            if mask is not None:
                inp = inp * mask                                     # between layers only
    output = inp
    h_n = np.stack(h_n)
    c_n = np.stack(c_n) if is_lstm else None
    inv = None if perm is None else np.argsort(perm)
    if perm is not None:
        output, h_n = output[:, inv], h_n[:, inv]
        c_n = None if c_n is None else c_n[:, inv]
    used = masks[:-1] if perm is None else [None if m is None else m[:, inv] for m in masks[:-1]]
    cache = dict(mode=mode, weights=weights, inputs=inputs, saved=saved, masks=masks,
                 dropout_masks=used,
                 perm=perm, sizes=sizes, shape=(T, N, H, H_out, L, D), dtype=dt)
    return (output, h_n, c_n), cache


def dropout_mask(shape, p, rng, dtype):
    """Inverted dropout mask: kept elements scaled by 1 / (1 - p); p == 1 zeroes all."""
    if p >= 1:
        return np.zeros(shape, dtype=dtype)
    keep = rng.random(shape) >= p
    return (keep / (1.0 - p)).astype(dtype)


def backward(cache, d_output=None, d_h_n=None, d_c_n=None, dh_norms=False, pool=None):
    """Backpropagation through time for a ``forward`` call.

    d_output (L, N, D * H_out), d_h_n (num_layers * D, N, H_out), d_c_n
    (num_layers * D, N, H); any may be None (zero). Returns a dict with
    ``dx`` (L, N, H_in), ``dh0``, ``dc0`` (None unless LSTM) and ``dweights``, nested like
    ``weights`` (None where the parameter does not exist). With dh_norms=True it also
    holds ``dh_norms``: per layer and direction an (L, N) array of |dloss/dh_t|, the
    gradient reaching each step's hidden state (0 at padded steps): where BPTT's
    products of Jacobians make gradients vanish or explode, it shows.
    pool: an rnnlab._pool.Pool for the internal buffers (given back before returning).
    """
    cell = CELLS[cache["mode"]]
    weights, sizes, perm = cache["weights"], cache["sizes"], cache["perm"]
    T, N, H, H_out, L, D = cache["shape"]
    dt = cache["dtype"]
    is_lstm = cache["mode"] == "LSTM"
    if perm is not None:                                  # into the forward's sorted order
        d_output = None if d_output is None else d_output[:, perm]
        d_h_n = None if d_h_n is None else d_h_n[:, perm]
        d_c_n = None if d_c_n is None else d_c_n[:, perm]
    dh0 = np.zeros((L * D, N, H_out), dtype=dt)
    dc0 = np.zeros((L * D, N, H), dtype=dt) if is_lstm else None
    dweights = [[None] * D for _ in range(L)]
    norms = [[np.zeros((T, N)) if dh_norms else None for _ in range(D)] for _ in range(L)]
    d_inp = d_output
    lease = PLAIN if pool is None else pool.lease()
    with np.errstate(**_QUIET):
        for k in range(L - 1, -1, -1):
            dx = None
            for d in range(D):
                j = k * D + d
                dout = None if d_inp is None else d_inp[:, :, d * H_out:(d + 1) * H_out]
                dh = np.zeros((N, H_out), dtype=dt) if d_h_n is None else d_h_n[j]
                dc = None
                if is_lstm:
                    dc = np.zeros((N, H), dtype=dt) if d_c_n is None else d_c_n[j]
                dx_d, dh0[j], dc_d, dweights[k][d] = _direction_backward(
                    cell, cache["inputs"][k], dout, dh, dc, weights[k][d], d == 1, sizes,
                    cache["saved"][j], lease, norms[k][d])
                if is_lstm:
                    dc0[j] = dc_d
                dx = dx_d if dx is None else dx + dx_d
            if k > 0 and cache["masks"][k - 1] is not None:
                dx = dx * cache["masks"][k - 1]           # through the dropout of layer k-1
            d_inp = dx
    lease.release()
    if perm is not None:
        inv = np.argsort(perm)
        d_inp, dh0 = d_inp[:, inv], dh0[:, inv]
        dc0 = None if dc0 is None else dc0[:, inv]
    result = dict(dx=d_inp, dh0=dh0, dc0=dc0, dweights=dweights)
    if dh_norms:
        inv = slice(None) if perm is None else np.argsort(perm)
        result["dh_norms"] = [[n[:, inv] for n in layer] for layer in norms]
    return result
