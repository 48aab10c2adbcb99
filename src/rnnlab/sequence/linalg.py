"""The per-step matrix products of the driver and the steppers."""
import threading
import weakref

import numpy as np

from ..tuning import (BLAS_ROWS, FEW_ROWS, PAIR_GEMM_MIN, PAIR_GEMM_STEPS, PAIR_ROWS,
                      POOL_WEIGHTS_MAX, PROJECT_FEW_MIN, PROJECT_FEW_ROWS,
                      TRANSPOSE_BLOCK_BYTES, TRANSPOSE_BLOCKED)
from . import kernels
from .pool import KEPT, PLAIN, aligned_empty, for_weights


def dot(a, b, out=None):
    """a @ b for 2-D a and b (``out``: where to write it). np.dot costs ~0.5 us less per
    call than np.matmul, but with an inner dimension of 1 NumPy 2.4's np.dot takes a
    scaling path that turns 0 * NaN into 0 (torch, and np.matmul, give NaN): np.matmul
    there. tests/test_hardening.py holds the case."""
    if a.shape[1] == 1:
        return np.matmul(a, b, out=out)
    return np.dot(a, b, out=out)


def project(x2d, w_ih, out):
    """out = x2d @ w_ih.T: the input projection of every step (x2d (M, I), W_ih (G*H, I)
    in torch's layout, out (M, G*H) C-contiguous)."""
    return project_gates(x2d, w_ih.reshape(1, *w_ih.shape), 0, w_ih.shape[0], out)


def project_gates(x2d, w3, lo, hi, out, kept=None):
    """out[:, g*B:(g+1)*B] = x2d @ w3[g, lo:hi].T for each gate g (B = hi - lo; w3 (G, H, I)
    W_ih by gates, C-contiguous float32 with ``kept``; out (M, G*B) C-contiguous): a few
    rows into many outputs by the compiled project_few (tuning.PROJECT_FEW_ROWS); with
    ``kept`` (a buffer of ``kept_halves``: the pair's halves at batch 1), the product in
    register tiles from the units' rows of W_ih in panels kept there (_kept.project_kept:
    as _loops_in.PAIR_IN's, the same bits); else one OpenBLAS product per gate."""
    M, G, B = x2d.shape[0], w3.shape[0], hi - lo
    if few_rows(M, B, out.dtype):
        from ._compiled import project_few
        project_few(out, np.ascontiguousarray(x2d), np.ascontiguousarray(w3), lo, hi)
    elif kept is not None:
        from ._kept import project_kept
        project_kept(out, np.ascontiguousarray(x2d), kept, w3.reshape(-1, w3.shape[2]), G,
                     w3.shape[1], lo, B)
    elif G == 1:
        np.matmul(x2d, w3[0, lo:hi].T, out=out)
    else:
        np.matmul(x2d, w3[:, lo:hi, :].transpose(0, 2, 1),
                  out=out.reshape(M, G, B).transpose(1, 0, 2))
    return out


def few_rows(M, B, dtype):
    """Whether a product of M rows into B columns (each gate's) is project_few's: float32
    with numba, 2 to PROJECT_FEW_ROWS rows, more than PROJECT_FEW_MIN outputs."""
    return (2 <= M <= PROJECT_FEW_ROWS and M * B > PROJECT_FEW_MIN and dtype == np.float32
            and kernels.available())


def per_row(w, v, out):
    """out[n] = w @ v[n] for each row n of v (w (M, K) in any layout; v (N, K))."""
    for n in range(v.shape[0]):
        matvec(w, v[n], out[n])
    return out


def per_row_wanted(N, GH, H_out):
    """Whether h W_hh^T (and BPTT's dgh W_hh) is one BLAS matrix-vector product per row
    (N rows, W_hh (G*H, H_out)): a few rows and a W_hh that OpenBLAS splits over its
    threads (tuning.BLAS_ROWS; a 1-row LSTM at H = 512: 22.7 -> ~5.6 ms for 100 steps)."""
    return N <= FEW_ROWS and GH * H_out >= BLAS_ROWS


def matvec(w, v, out):
    """w @ v for a 2-D w and a 1-D v into ``out`` (as ``dot``: np.matmul when the inner
    dimension is 1)."""
    if w.shape[1] == 1:
        return np.matmul(w, v, out=out)
    return np.dot(w, v, out=out)


def half_units(H, half):
    """(lo, hi): the units of the pair's half ``half`` (0: the first H // 2, 1: the rest)."""
    return (0, H // 2) if half == 0 else (H // 2, H)


def both_halves(H):
    """(half_units(H, 0), half_units(H, 1))."""
    return half_units(H, 0), half_units(H, 1)


def _stripe(cols, itemsize):
    """Rows per block of a blocked transposing copy: about TRANSPOSE_BLOCK_BYTES, 16-64."""
    return min(max(TRANSPOSE_BLOCK_BYTES // (cols * itemsize), 16), 64)


def transposed(w, copy=True, lease=None, out=None):
    """w.T (w 2-D) as a C-contiguous array of its own (from ``lease``, a pool.Lease, when
    given: pool.for_weights; written into ``out`` when given); copy=False: w.T itself when
    it already is one. Large ones go
    by blocks of 16-64 rows of about tuning.TRANSPOSE_BLOCK_BYTES (NumPy's own transposing
    copy is cache-unfriendly there; tuning.TRANSPOSE_BLOCKED)."""
    t = w.T
    if not copy and t.flags.c_contiguous:
        return t
    if out is None:
        out = (aligned_empty(t.shape, w.dtype, least=0) if lease is None
               else for_weights(lease, t.shape, w.dtype))
    if w.size < TRANSPOSE_BLOCKED:
        out[...] = t
        return out
    b = _stripe(w.shape[1], w.itemsize)
    for i in range(0, w.shape[0], b):
        out[:, i:i + b] = w[i:i + b].T
    return out


def gemm_rows(T, N, GH, H_out):
    """Whether the pair's T steps of N rows take each half's products of all rows from
    its rows of W_ih and W_hh in panels (``kept_batch_halves``, in register tiles), not
    from dot products:
    T >= PAIR_GEMM_STEPS, N > FEW_ROWS, N * G*H * H_out > PAIR_GEMM_MIN and more than
    TILE_ROW_WEIGHTS weights of W_hh per row (fewer: the rows in halves; tuning.py says
    why)."""
    return (T >= PAIR_GEMM_STEPS and N > max(FEW_ROWS, PAIR_ROWS)
            and N * GH * H_out > PAIR_GEMM_MIN and not kernels.by_rows(N, GH, H_out))


#: columns of a panel of W^T (_tiles.PANEL, a register tile's width; not imported: _tiles
#: needs numba)
PANEL = 32


def panel_count(J):
    """Panels of PANEL columns for J columns."""
    return -(-J // PANEL)


def panel_shape(J, K):
    """The shape of W^T (K, J) in panels (``in_panels``): (panel_count(J) * K, PANEL)."""
    return panel_count(J) * K, PANEL


def panels_of(w, out=None, lease=None):
    """W^T of a 2-D W (J, K) in panels (``in_panels``)."""
    return in_panels(w.reshape(1, *w.shape), 0, w.shape[0], out, lease)


def leased_panels(w, lease, shape):
    """(buffer, panels_of(w)): the panels in a buffer from ``lease`` of ``shape`` (a
    weight's, where the panels fill it exactly; else their own), so that a buffer of that
    shape taken after it is given back (a snapshot, a gradient) takes it: no higher peak."""
    own = panel_shape(*w.shape)
    buf = for_weights(lease, shape if own[0] * PANEL == np.prod(shape) else own, w.dtype)
    return buf, panels_of(w, buf.reshape(own))


def in_panels(w3, lo, hi, out=None, lease=None):
    """W^T in panels of PANEL columns, as the compiled loops' products read it
    (_tiles.product): W's rows are the rows lo:hi (B of them) of each gate of w3 (G, H,
    K), gate after gate (J = G*B), and out (P*K, 32) (P = ``panel_count(J)``) holds in
    its rows p*K:(p+1)*K the columns 32p:32p+32 of W^T (K, J), zeros past J. A tile then
    reads its 32 columns from 128-byte rows one after another (from W^T itself they lay
    a row of W^T apart, 1-8 KB: a new page every few k; BENCHMARKS.md, "W^T in panels").
    ``out``: where (else from ``lease``: pool.for_weights, else its own)."""
    G, _, K = w3.shape
    B = hi - lo
    J = G * B
    P = panel_count(J)
    if out is None:
        out = (aligned_empty(panel_shape(J, K), w3.dtype, least=0) if lease is None
               else for_weights(lease, panel_shape(J, K), w3.dtype))
    o = out.reshape(P, K, PANEL)
    if B % PANEL == 0:                                   # each panel within one gate
        q = B // PANEL
        for g in range(G):
            o[g * q:(g + 1) * q] = w3[g, lo:hi].reshape(q, PANEL, K).transpose(0, 2, 1)
        return out
    rows = w3[:, lo:hi].reshape(J, K)                    # (a copy)
    full = J // PANEL
    o[:full] = rows[:full * PANEL].reshape(full, PANEL, K).transpose(0, 2, 1)
    if full < P:
        o[full, :, :J - full * PANEL] = rows[full * PANEL:].T
        o[full, :, J - full * PANEL:] = 0
    return out


#: rows before the bits in a kept buffer whose panels _kept.kept_panels checks (_kept.HEAD):
#: its first int32 1 when the next call compares first, 0 when the last found no change
KEPT_HEAD = 1


def kept_shape(J, K):
    """The shape of a kept buffer for W (K, J) (_kept.kept_panels): a head row, W's bits,
    then W in panels, in rows of PANEL."""
    return KEPT_HEAD + _bit_rows(J, K) + panel_count(J) * K, PANEL


def _bit_rows(J, K):
    """Rows of PANEL that hold the bits of W (K, J) in a kept buffer (_kept.bit_rows)."""
    return -(-J * K // PANEL)


def kept_halves(w_ih, G, H, rows):
    """The two buffers (a half of the units each) in which a batch-1 sequence on the pair
    of more than PROJECT_FEW_ROWS ``rows`` of input (None for fewer: project_few's or
    OpenBLAS's) keeps its half of W_ih in panels from call to call (_loops_in.PAIR_IN's
    projection in register tiles, _kept.project_kept, under the pair's lock), about 2x
    W_ih's bytes in all. Each call compares the half's rows with the bits it packed them
    from, bit for bit, and packs them again when any differs: a weight written in place is
    never read stale (the compare among the projection's multiply-adds while nothing
    changed, _kept). Kept while w_ih lives, or until rnnlab.empty_cache()."""
    if rows <= PROJECT_FEW_ROWS or w_ih.nbytes > POOL_WEIGHTS_MAX:   # (too large to keep:
        return None                                                # OpenBLAS's, as ever)
    return _kept((w_ih,), "halves",
                 lambda: [[(w_ih, G, H, lo, hi)] for lo, hi in both_halves(H)], KEPT_HEAD)


def kept_batch_halves(w_ih, w_hh, G, H, lease=PLAIN):
    """The two buffers in which the pair's batch path keeps each half's rows of W_ih and
    of W_hh in panels from call to call, as ``kept_halves`` (2x both weights' bytes; under
    the pair's lock): the bits of both, then the panels its loop reads (``batch_panels``);
    each thread checks (and fills) its own half (``fill_batch_half``). Weights of more
    than POOL_WEIGHTS_MAX bytes together are not kept (a huge layer would hold 3x its
    parameters): the panels alone, from ``lease``, packed every call."""
    if w_ih.nbytes + w_hh.nbytes > POOL_WEIGHTS_MAX:
        return [for_weights(lease, panel_shape(G * (hi - lo), w_ih.shape[1] + H),
                            np.float32) for lo, hi in both_halves(H)]
    return _kept((w_ih, w_hh), "batch", lambda: [[(w_ih, G, H, lo, hi), (w_hh, G, H, lo, hi)]
                                                 for lo, hi in both_halves(H)])


def batch_panels(buf, G, H, half, I):
    """The panels of a ``kept_batch_halves`` buffer: the half's rows of W_ih (G*H, I)
    transposed in panels (P*I, 32), then W_hh's (P*H, 32), as _loops.PAIR_BATCH reads."""
    lo, hi = half_units(H, half)
    return buf[buf.shape[0] - panel_count(G * (hi - lo)) * (I + H):]


def fill_batch_half(buf, w_ih, w_hh, G, H, half):
    """Check ``batch_panels(buf)`` against W_ih's and W_hh's rows for half ``half``, bit
    for bit, and pack again what differs (_kept.packed_again; without the GIL); a buffer of
    the panels alone (weights too large to keep) is packed (in_panels)."""
    from ._kept import packed_again
    lo, hi = half_units(H, half)
    J, I = G * (hi - lo), w_ih.shape[1]
    panels, PI = batch_panels(buf, G, H, half, I), panel_count(J) * I
    s, s_ih = buf.shape[0] - panels.shape[0], _bit_rows(J, I)
    if s == 0:
        in_panels(w_ih.reshape(G, H, I), lo, hi, panels[:PI])
        in_panels(w_hh.reshape(G, H, H), lo, hi, panels[PI:])
        return
    packed_again(buf[:s_ih], panels[:PI], w_ih, G, H, lo, hi - lo)
    packed_again(buf[s_ih:s], panels[PI:], w_hh, G, H, lo, hi - lo)


def kept_panels_of(w, lease):
    """panels_of(w) for an unrecorded call of the compiled loops, kept from call to call
    as ``kept_halves`` keeps the pair's (compared bit for bit each call; 2x w's bytes),
    one per thread that calls (the module's pools are per thread too); a weight that is
    not ``keepable`` gets a copy from ``lease`` each call, as before."""
    if not keepable(w):
        return panels_of(w, lease=lease)
    return panels_in(kept_buffer(w), w)


def keepable(w):
    """Whether ``kept_panels_of`` keeps w's panels: C-contiguous float32 of at most
    POOL_WEIGHTS_MAX bytes (a huge layer would hold 3x its parameters)."""
    return w.dtype == np.float32 and w.flags.c_contiguous and w.nbytes <= POOL_WEIGHTS_MAX


def kept_buffer(w):
    """The buffer in which this thread keeps w's panels (pool.KEPT: dropped with w, or by
    rnnlab.empty_cache()); w ``keepable``."""
    J = w.shape[0]
    return _kept((w,), threading.get_ident(), lambda: [[(w, 1, J, 0, J)]], KEPT_HEAD)[0]


def panels_in(buf, w):
    """w's panels from its ``kept_buffer``, compared with w bit for bit first (packed
    again where any bit differs: an edit in place is seen)."""
    if not _KEPT_PANELS:                # numba's, imported at the first call (not at
        from ._kept import kept_panels  # rnnlab's import)
        _KEPT_PANELS.append(kept_panels)
    J = w.shape[0]
    return _KEPT_PANELS[0](buf, w, 1, J, 0, J)


_KEPT_PANELS = []


def _kept(weights, tag, buffers, head=0):
    """pool.KEPT's buffers for ``weights`` (C-contiguous float32) under ``tag``, made from
    ``buffers()`` when not kept (the lookup alone is what a call pays: ~2 us less than
    building the list first): for each buffer ``head`` rows (the head's first int32 1:
    compare first, _kept.kept_panels),
    then its parts (w, G, H, lo, hi), the rows lo:hi of each gate of w (G*H, K), whose
    bits it holds, part after part, each from a row of PANEL on, then their panels, part
    after part (_kept.packed_again); made with bits no row has (each row's bits inverted),
    so the first call packs them. Dropped when any of the weights is."""
    key = (tuple(map(id, weights)), tag)
    entry = KEPT.get(key)
    if entry is not None:
        for r, w in zip(entry[0], weights):
            if r() is not w:
                break
        else:
            return entry[1]
    bufs = []
    for parts in buffers():
        seen = [_bit_rows(G * (hi - lo), w.shape[1]) for w, G, H, lo, hi in parts]
        rows = head + sum(seen) + sum(panel_count(G * (hi - lo)) * w.shape[1]
                                      for w, G, H, lo, hi in parts)
        buf, at = aligned_empty((rows, PANEL), np.float32, least=0), head
        if head:                                    # compare first: nothing packed yet
            buf[:head] = 0
            buf[0, :1].view(np.int32)[0] = 1
        for (w, G, H, lo, hi), n in zip(parts, seen):
            J, K = G * (hi - lo), w.shape[1]
            np.invert(w.reshape(G, H, K)[:, lo:hi].reshape(J * K).view(np.int32),
                      out=buf[at:at + n].reshape(-1)[:J * K].view(np.int32))
            at += n
        bufs.append(buf)

    def drop(ref):
        if any(r is ref for r in KEPT.get(key, ((),))[0]):
            KEPT.pop(key, None)
    KEPT[key] = (tuple(weakref.ref(w, drop) for w in weights), tuple(bufs))
    if isinstance(tag, int):        # a thread's own (kept_panels_of): those of threads
        alive = {t.ident for t in threading.enumerate()}          # gone go, not kept
        for k in list(KEPT):                                      # while the weights live
            if k[0] == key[0] and isinstance(k[1], int) and k[1] not in alive:
                KEPT.pop(k, None)
    return KEPT[key][1]
