"""Elementwise activations shared by the cell families.

sigmoid is 1 / (1 + exp(-x)), four passes in place. It keeps its relative precision over
the whole range in float32 and float64 (no cancellation: at x = -17 it returns 4.1e-8 in
float32, where 0.5 * (1 + tanh(x / 2)) gives 0), and NaN stays NaN. For x below about
-88 (float32) / -709 (float64) exp(-x) overflows to inf and the result is the exact limit
0, as in torch; callers run it under np.errstate(over="ignore"), as the driver does, so no
warning reaches the user.
"""
import numpy as np


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
