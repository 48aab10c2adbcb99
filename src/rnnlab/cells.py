"""One-step cells with torch.nn's API: RNNCell, GRUCell, LSTMCell.

A cell is the sequence driver run for one step, one layer, one direction, so a loop of
cells computes exactly what the layer computes. Each call records what its backward
needs; ``backward`` undoes the most recent call not yet undone (last in, first out), so a
hand-written loop over time can be backpropagated step by step.
"""
import numpy as np

from . import functional as F
from ._module import (BackwardError, Module, ShapeError, as_input, check_bool, check_int,
                      recording)

_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", None)


class _CellBase(Module):
    def __init__(self, mode, input_size, hidden_size, bias, dtype, seed):
        super().__init__(dtype, seed)
        self.mode = mode
        self.input_size = check_int("input_size", input_size)
        self.hidden_size = check_int("hidden_size", hidden_size)
        self.bias = check_bool("bias", bias)
        G, H = F.CELLS[mode][2], self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        self._init_parameters(shapes, H)
        self._clear_cache()

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            extra += f", nonlinearity={self.nonlinearity!r}"
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    _RECORDS = ("_tape",)

    def _clear_cache(self):
        self._tape = []                                        # caches of calls not yet undone

    def _names(self):
        return _NAMES if self.bias else ("weight_ih", "weight_hh", None, None, None)

    def _state(self, value, batched, N, label):
        if value is None:
            return None
        name = type(self).__name__
        arr = as_input(value, self.dtype, "hx")
        if arr.ndim not in (1, 2):
            raise ShapeError(f"{name}: Expected {label} to be 1D or 2D, got {arr.ndim}D instead")
        if (arr.ndim == 2) != batched:
            raise ShapeError(f"{name}: {label} must be {'2' if batched else '1'}-D like the "
                             f"{'batched' if batched else 'unbatched'} input, got {arr.ndim}-D")
        arr = arr if batched else arr[None]
        if arr.shape[0] != N:
            raise ShapeError(f"Input batch size {N} doesn't match {label} batch size {arr.shape[0]}")
        if arr.shape[1] != self.hidden_size:
            raise ShapeError(f"{label} has inconsistent hidden_size: got {arr.shape[1]}, "
                             f"expected {self.hidden_size}")
        return arr[None]                                       # (1, N, H): one layer, one direction

    def _run(self, input, h0, c0):
        name = type(self).__name__
        x = as_input(input, self.dtype)
        if x.ndim not in (1, 2):
            raise ShapeError(f"{name}: Expected input to be 1D or 2D, got {x.ndim}D instead")
        batched = x.ndim == 2
        x = x if batched else x[None]
        if x.shape[1] != self.input_size:
            raise ShapeError(f"input has inconsistent input_size: got {x.shape[1]} expected "
                             f"{self.input_size}")
        N = x.shape[0]
        h0 = self._state(h0, batched, N, "hidden0" if c0 is None else "hx[0]")
        c0 = self._state(c0, batched, N, "hx[1]")
        p = self._parameters
        weights = [[tuple(None if n is None else p[n] for n in self._names())]]
        (_, h1, c1), cache = F.forward(self.mode, x[None], weights, h0, c0)
        if recording():
            self._tape.append((cache, batched))
        h1 = h1[0] if batched else h1[0, 0]
        if c1 is None:
            return h1
        return h1, (c1[0] if batched else c1[0, 0])

    def _grad(self, g, N, batched, label):
        """dh1 / dc1 -> (1, N, H) for the driver."""
        g = self._upstream(g, (N, self.hidden_size) if batched else (self.hidden_size,), label)
        return None if g is None else (g if batched else g[None])[None]

    def _backward(self, dh1, dc1):
        if not self._tape:
            raise BackwardError(f"{type(self).__name__}.backward: no forward call left to "
                                "undo (each call can be backpropagated once, last in first out)")
        cache, batched = self._tape[-1]
        N = cache["shape"][1]
        dh1 = self._grad(dh1, N, batched, "dh1")
        dc1 = self._grad(dc1, N, batched, "dc1")
        g = F.backward(cache, None, dh1, dc1)
        self._tape.pop()
        self._add_grads(self._names(), g["dweights"][0][0])
        out = [g["dx"][0], g["dh0"][0]] + ([] if g["dc0"] is None else [g["dc0"][0]])
        return tuple(a if batched else a[0] for a in out)


class _HiddenCell(_CellBase):
    """A cell whose state is h alone (RNNCell, GRUCell)."""

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def forward(self, input, hx=None):
        """h1 = cell(x, h0); a missing h0 means zeros."""
        return self._run(input, hx, None)

    def backward(self, dh1):
        """Undo the most recent call: returns (dx, dh0); adds parameter gradients to grads."""
        return self._backward(dh1, None)


class RNNCell(_HiddenCell):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh | relu.

    x (N, input_size) or (input_size,); h (N, hidden_size) or (hidden_size,).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", *,
                 dtype=np.float32, seed=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, bias, dtype, seed)


class GRUCell(_HiddenCell):
    """r, z = s(...), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.
    Gate row blocks (r | z | n)."""

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, seed=None):
        super().__init__("GRU", input_size, hidden_size, bias, dtype, seed)


class LSTMCell(_CellBase):
    """i, f, g, o gates (rows i | f | g | o); c' = f c + i g; h' = o tanh(c').

    h1, c1 = cell(x, (h0, c0)) or cell(x); backward(dh1, dc1) -> (dx, dh0, dc0).
    """

    def __init__(self, input_size, hidden_size, bias=True, *, dtype=np.float32, seed=None):
        super().__init__("LSTM", input_size, hidden_size, bias, dtype, seed)

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def forward(self, input, hx=None):
        if hx is None:
            return self._run(input, None, None)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"LSTMCell: hx must be a tuple (h0, c0), got {type(hx).__name__}")
        if (hx[0] is None) != (hx[1] is None):
            raise TypeError("LSTMCell: give both h0 and c0, or neither")
        return self._run(input, hx[0], hx[1])

    def backward(self, dh1=None, dc1=None):
        """Undo the most recent call: returns (dx, dh0, dc0); either gradient may be None."""
        return self._backward(dh1, dc1)


def run_cells(cell, xs, state=None):
    """A cell in a plain Python loop over time: the hand-written alternative to a layer.

    xs (L, N, input_size) or (L, input_size); state h0, or (h0, c0) for LSTMCell, or None.
    Returns (hs, state): hs (L, N, H) stacks every step's h; state is the final h (LSTM:
    (h, c)). Each step is recorded for ``backprop_cells``.
    """
    lstm = isinstance(cell, LSTMCell)
    hs = []
    for x_t in xs:
        state = cell(x_t, state)
        hs.append(state[0] if lstm else state)
    return np.stack(hs), state


def backprop_cells(cell, d_hs, d_state=None):
    """BPTT by hand through the steps of ``run_cells``, last step first.

    d_hs (L, N, H): gradient on every step's h; d_state: on the final state (LSTM:
    (dh, dc), either may be None). Returns (dxs, d_state0); parameter gradients are added
    into cell.grads.
    """
    lstm = isinstance(cell, LSTMCell)
    dh, dc = (d_state if d_state is not None else (None, None)) if lstm else (d_state, None)
    dxs = [None] * len(d_hs)
    for t in range(len(d_hs) - 1, -1, -1):
        dh = d_hs[t] if dh is None else dh + d_hs[t]        # from the output + from the future
        if lstm:
            dxs[t], dh, dc = cell.backward(dh, dc)
        else:
            dxs[t], dh = cell.backward(dh)
    return np.stack(dxs), ((dh, dc) if lstm else dh)
