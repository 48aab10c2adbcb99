"""Elementwise activations shared by the cell families, each beside its derivative.

sigmoid is 1 / (1 + exp(-x)), four passes in place. It keeps its relative precision over
the whole range in float32 and float64 (no cancellation: at x = -17 it returns 4.1e-8 in
float32, where 0.5 * (1 + tanh(x / 2)) gives 0), and NaN stays NaN. For x below about
-88 (float32) / -709 (float64) exp(-x) overflows to inf and the result is the exact limit
0, as in torch; callers run it under np.errstate(over="ignore"), as the driver does, so no
warning reaches the user.

The scalar units of the families (their compiled forms) use the names below: ``sigmoid``,
``tanh``, ``relu`` and ``ONE`` / ``ZERO``; the compiled module binds its own float32
versions of the same names (sequence/_compiled.py).
"""
import numpy as np

ONE, ZERO = 1.0, 0.0
tanh = np.tanh
RANGES = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}     # where each activation's values lie


def sigmoid(x, out=None):
    """Logistic sigmoid of x, written into ``out`` when given (``out`` may be ``x``)."""
    out = np.multiply(x, -1.0, out=out)     # not np.negative: NumPy 2.4.6 computes it wrongly
    np.exp(out, out=out)                    # in place on some strided views (test_activations)
    out += 1.0
    np.reciprocal(out, out=out)
    return out


def sigmoid_grad(s):
    """d sigmoid / d x expressed through its output s."""
    return s * (1.0 - s)


def tanh_grad(t):
    """d tanh / d x expressed through its output t."""
    return 1.0 - t * t


def relu(x):
    """max(x, 0); NaN stays NaN (np.maximum), -0.0 gives 0.0."""
    return np.maximum(x, 0.0)


def relu_grad(y):
    """d relu / d x through its output y: 1 where y > 0, else 0 (NaN y passes the
    gradient, as torch's threshold backward does)."""
    return np.where(y <= 0.0, 0.0, 1.0)
