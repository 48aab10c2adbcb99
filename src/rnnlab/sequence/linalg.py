"""The per-step matrix product of the driver and the steppers."""
import numpy as np


def dot(a, b, out=None):
    """a @ b for 2-D a and b (``out``: where to write it). np.dot costs ~0.5 us less per
    call than np.matmul, but with an inner dimension of 1 NumPy 2.4's np.dot takes a
    scaling path that turns 0 * NaN into 0 (torch, and np.matmul, give NaN): np.matmul
    there. tests/test_hardening.py holds the case."""
    if a.shape[1] == 1:
        return np.matmul(a, b, out=out)
    return np.dot(a, b, out=out)


def matvec(w, v, out):
    """w @ v for a 2-D w and a 1-D v into ``out`` (as ``dot``: np.matmul when the inner
    dimension is 1)."""
    if w.shape[1] == 1:
        return np.matmul(w, v, out=out)
    return np.dot(w, v, out=out)
