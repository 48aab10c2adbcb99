"""Elementwise activations shared by the cell families.

sigmoid is written as 0.5 * (1 + tanh(x / 2)): the same function as 1 / (1 + exp(-x)),
but it never overflows (no warning for |x| ~ 1e4) and NaN stays NaN.
"""
import numpy as np


def sigmoid(x, out=None):
    """Logistic sigmoid, overflow-free; writes into `out` when given."""
    out = np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def sigmoid_grad(s):
    """d sigmoid / d x expressed through its output s."""
    return s * (1.0 - s)


def tanh_grad(t):
    """d tanh / d x expressed through its output t."""
    return 1.0 - t * t
