"""Elementwise activations shared by the cell families.

sigmoid keeps its relative precision over the whole range in float32 and float64:
1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0, with e = exp(-|x|) <= 1, so it
never overflows (no warning for |x| ~ 1e4), returns 4.1e-8 at x = -17 in float32 (where
0.5 * (1 + tanh(x / 2)) gives 0) and keeps NaN as NaN. The driver runs these under
np.errstate (subnormal results near x = -100 would otherwise warn of underflow).
"""
import numpy as np


def sigmoid(x, out=None):
    """Logistic sigmoid of x, written into ``out`` when given (``out`` may be ``x``)."""
    neg = np.signbit(x)                      # where x < 0 (NaN: sign bit of the NaN)
    e = np.abs(x)
    np.negative(e, out=e)
    np.exp(e, out=e)                         # e = exp(-|x|) in (0, 1]
    out = np.add(e, 1.0, out=out)            # 1 + e
    np.divide(1.0, out, out=out)             # 1 / (1 + e): sigmoid(|x|)
    np.multiply(out, e, out=out, where=neg)  # x < 0: e / (1 + e)
    return out


def sigmoid_grad(s):
    """d sigmoid / d x expressed through its output s."""
    return s * (1.0 - s)


def tanh_grad(t):
    """d tanh / d x expressed through its output t."""
    return 1.0 - t * t
