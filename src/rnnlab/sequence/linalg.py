"""The per-step matrix products of the driver and the steppers."""
import numpy as np

from ..tuning import TRANSPOSE_BLOCK_BYTES, TRANSPOSE_BLOCKED
from .pool import for_weights


def dot(a, b, out=None):
    """a @ b for 2-D a and b (``out``: where to write it). np.dot costs ~0.5 us less per
    call than np.matmul, but with an inner dimension of 1 NumPy 2.4's np.dot takes a
    scaling path that turns 0 * NaN into 0 (torch, and np.matmul, give NaN): np.matmul
    there. tests/test_hardening.py holds the case."""
    if a.shape[1] == 1:
        return np.matmul(a, b, out=out)
    return np.dot(a, b, out=out)


def per_row(w, v, out):
    """out[n] = w @ v[n] for each row n of v (w (M, K) in any layout; v (N, K))."""
    for n in range(v.shape[0]):
        matvec(w, v[n], out[n])
    return out


def matvec(w, v, out):
    """w @ v for a 2-D w and a 1-D v into ``out`` (as ``dot``: np.matmul when the inner
    dimension is 1)."""
    if w.shape[1] == 1:
        return np.matmul(w, v, out=out)
    return np.dot(w, v, out=out)


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
        out = (np.empty(t.shape, dtype=w.dtype) if lease is None
               else for_weights(lease, t.shape, w.dtype))
    if w.size < TRANSPOSE_BLOCKED:
        out[...] = t
        return out
    b = min(max(TRANSPOSE_BLOCK_BYTES // (w.shape[1] * w.itemsize), 16), 64)
    for i in range(0, w.shape[0], b):
        out[:, i:i + b] = w[i:i + b].T
    return out
