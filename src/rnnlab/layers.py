"""Multi-layer recurrent layers with torch.nn's API: RNN, GRU, LSTM.

Thin classes: they hold parameters and gradients, check and reshape what users pass,
and call rnnlab.functional.forward / backward.
"""
import numbers
import warnings

import numpy as np

from . import functional as F
from ._module import (BackwardError, Module, ShapeError, as_input, check_bool, check_int,
                      to_numpy)


def param_names(k, d, bias, proj):
    """torch's parameter names of layer k, direction d, in (w_ih, w_hh, b_ih, b_hh, w_hr)
    order; None where the parameter does not exist."""
    s = "_reverse" if d else ""
    return (f"weight_ih_l{k}{s}", f"weight_hh_l{k}{s}",
            f"bias_ih_l{k}{s}" if bias else None, f"bias_hh_l{k}{s}" if bias else None,
            f"weight_hr_l{k}{s}" if proj else None)


class RNNBase(Module):
    """Shared by RNN, GRU and LSTM. Shapes (D = 2 if bidirectional else 1,
    H_out = proj_size or hidden_size):

    input  (L, N, H_in), (N, L, H_in) with batch_first, or unbatched (L, H_in)
    h0     (D * num_layers, N, H_out) or unbatched (D * num_layers, H_out); None = zeros
    output (L, N, D * H_out): the last layer's h at every step (forward half, backward half)
    h_n    (D * num_layers, N, H_out): every layer and direction's h at its last step
    """

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0, *,
                 dtype=np.float32, seed=None):
        super().__init__(dtype, seed)
        if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
                or not 0 <= dropout <= 1):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             f"probability of an element being zeroed, got {dropout!r}")
        self.input_size = check_int("input_size", input_size)
        self.hidden_size = check_int("hidden_size", hidden_size)
        self.num_layers = check_int("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        if isinstance(proj_size, bool) or not isinstance(proj_size, numbers.Integral):
            raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             f"projections, got {proj_size}")
        if proj_size >= hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size="
                             f"{proj_size} and hidden_size={hidden_size}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        self.mode = mode
        self.dropout = float(dropout)
        self.proj_size = int(proj_size)
        G = F.CELLS[mode][2]
        H, D = self.hidden_size, self.num_directions
        H_out = self.proj_size or H
        shapes = {}
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else D * H_out
            for d in range(D):
                for name, shape in zip(param_names(k, d, self.bias, self.proj_size),
                                       [(G * H, in_k), (G * H, H_out), (G * H,), (G * H,),
                                        (H_out, H)]):
                    if name is not None:
                        shapes[name] = shape
        self._init_parameters(shapes, H)
        self._cache = None
        self._steps = []

    # -- helpers --------------------------------------------------------------------
    @property
    def num_directions(self):
        return 2 if self.bidirectional else 1

    @property
    def _h_out(self):
        return self.proj_size or self.hidden_size

    @property
    def _is_lstm(self):
        return self.mode == "LSTM"

    def _names(self):
        return [[param_names(k, d, self.bias, self.proj_size) for d in range(self.num_directions)]
                for k in range(self.num_layers)]

    def _weights(self):
        p = self._parameters
        return [[tuple(None if n is None else p[n] for n in names) for names in layer]
                for layer in self._names()]

    def _clear_cache(self):
        self._cache = None
        self._steps = []

    def __repr__(self):
        s = f"{type(self).__name__}({self.input_size}, {self.hidden_size}"
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0,
                        bidirectional=False, proj_size=0)
        for key, default in defaults.items():
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        return s + ")"

    def _check_state(self, value, expected, batched, label):
        """One initial state: returns it time-major and batched, or raises."""
        arr = as_input(value, self.dtype, "hx")
        want_ndim = 3 if batched else 2
        if arr.ndim != want_ndim:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise ShapeError(f"For {kind} input, hx should also be {want_ndim}-D but got "
                             f"{arr.ndim}-D tensor")
        if not batched:
            arr = arr[:, None]
        if arr.shape != expected:
            got = list(arr.shape if batched else arr[:, 0].shape)
            exp = expected if batched else (expected[0], expected[2])
            raise ShapeError(f"Expected {label} size {exp}, got {got}")
        return arr

    def _prepare(self, input, hx, lengths):
        """Validate and bring input, states and lengths to the time-major batched layout."""
        name = type(self).__name__
        x = as_input(input, self.dtype)
        if x.ndim not in (2, 3):
            raise ShapeError(f"{name}: Expected input to be 2D or 3D, got {x.ndim}D tensor instead")
        batched = x.ndim == 3
        if not batched:
            x = x[:, None]                                    # (L, 1, H_in); batch_first ignored
        elif self.batch_first:
            x = x.transpose(1, 0, 2)                          # (N, L, H_in) -> (L, N, H_in)
        if x.shape[-1] != self.input_size:
            raise ShapeError("input.size(-1) must be equal to input_size. Expected "
                             f"{self.input_size}, got {x.shape[-1]}")
        T, N = x.shape[:2]
        if T == 0:
            raise ShapeError(f"{name}: Expected a sequence length greater than zero, got "
                             f"input of shape {tuple(to_numpy(input).shape)}")
        LD = self.num_layers * self.num_directions
        h0 = c0 = None
        if self._is_lstm:
            if hx is not None:
                if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                    raise TypeError("LSTM: hx must be a tuple (h0, c0), got "
                                    f"{type(hx).__name__}")
                h0 = self._check_state(hx[0], (LD, N, self._h_out), batched, "hidden[0]")
                c0 = self._check_state(hx[1], (LD, N, self.hidden_size), batched, "hidden[1]")
        elif hx is not None:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{name}: hx must be an array, got a {type(hx).__name__}")
            h0 = self._check_state(hx, (LD, N, self._h_out), batched, "hidden")
        if lengths is not None:
            lengths = self._check_lengths(lengths, T, N)
        return x, h0, c0, lengths, batched

    @staticmethod
    def _check_lengths(lengths, T, N):
        arr = to_numpy(lengths)
        if arr.ndim != 1 or arr.shape[0] != N:
            raise ShapeError(f"lengths must be a 1-D array of {N} lengths (one per sequence), "
                             f"got shape {arr.shape}")
        if arr.dtype.kind not in "iu":
            if arr.dtype.kind != "f" or not np.all(arr == np.round(arr)):
                raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        bad = [int(v) for v in arr if v < 1 or v > T]
        if bad:
            raise ValueError(f"lengths must be between 1 and the padded length {T}, got "
                             f"{bad} in {arr.tolist()}")
        return arr

    def _present(self, arr, batched, time_major_output=False):
        """From time-major batched to the user's layout."""
        if not batched:
            return arr[:, 0]
        if time_major_output and self.batch_first:
            return np.ascontiguousarray(arr.transpose(1, 0, 2))
        return arr

    def _grad_in(self, grad, like, batched, label, is_output=False):
        """An upstream gradient from the user's layout to time-major batched."""
        if grad is None:
            return None
        g = to_numpy(grad)
        if g.shape != like.shape:
            raise BackwardError(f"{label} must have the shape of the forward's {label[2:]} "
                                f"{like.shape}, got {g.shape}")
        g = g.astype(self.dtype, copy=False)
        if not batched:
            return g[:, None]
        if is_output and self.batch_first:
            return g.transpose(1, 0, 2)
        return g

    # -- forward / backward -----------------------------------------------------------
    def __call__(self, input, hx=None, lengths=None):
        return self.forward(input, hx, lengths)

    def forward(self, input, hx=None, lengths=None):
        """output, h_n = layer(input, h0); LSTM: output, (h_n, c_n) = lstm(input, (h0, c0)).

        lengths: optional N ints; each sequence then stops at its own length, exactly like
        torch's pack_padded_sequence(enforce_sorted=False) -> layer -> pad_packed_sequence.
        """
        x, h0, c0, lengths, batched = self._prepare(input, hx, lengths)
        (out, h_n, c_n), cache = F.forward(
            self.mode, x, self._weights(), h0, c0, dropout=self.dropout,
            training=self.training, rng=self._rng, lengths=lengths)
        output = self._present(out, batched, time_major_output=True)
        output.flags.writeable = False      # backward reads it: copy before changing in place
        h_n = self._present(h_n, batched)
        c_n = None if c_n is None else self._present(c_n, batched)
        self._cache = (cache, batched, output, h_n, c_n)
        return (output, (h_n, c_n)) if self._is_lstm else (output, h_n)

    def _backward(self, d_output, d_h_n, d_c_n):
        if self._cache is None:
            raise BackwardError(f"{type(self).__name__}.backward called before forward")
        cache, batched, output, h_n, c_n = self._cache
        g = F.backward(cache,
                       self._grad_in(d_output, output, batched, "d_output", is_output=True),
                       self._grad_in(d_h_n, h_n, batched, "d_h_n"),
                       None if c_n is None else self._grad_in(d_c_n, c_n, batched, "d_c_n"))
        for names, dws in zip(self._names(), g["dweights"]):
            for n, dw in zip(names, dws):
                self._add_grads(n, dw)
        dx = self._present(g["dx"], batched, time_major_output=True)
        dh0 = self._present(g["dh0"], batched)
        if self._is_lstm:
            return dx, dh0, self._present(g["dc0"], batched)
        return dx, dh0

    def backward(self, d_output=None, d_h_n=None):
        """Backpropagate through the most recent forward: returns (dx, dh0) shaped like
        input and h0, and adds every parameter's gradient into ``grads``."""
        return self._backward(d_output, d_h_n, None)


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh | relu.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
        batch_first=False, dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, *, dtype=np.float32,
                 seed=None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if kwargs:
            raise TypeError(f"RNN got unexpected keyword argument(s) {sorted(kwargs)}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        self.nonlinearity = nonlinearity
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         dtype=dtype, seed=seed)


class GRU(RNNBase):
    """GRU with torch's gate order (r | z | n) and n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, *, dtype=np.float32, seed=None)
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, *, dtype=np.float32, seed=None, **kwargs):
        if "proj_size" in kwargs:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        if kwargs:
            raise TypeError(f"GRU got unexpected keyword argument(s) {sorted(kwargs)}")
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, dtype=dtype, seed=seed)


class LSTM(RNNBase):
    """LSTM with torch's gate order (i | f | g | o) and optional projection (proj_size).

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
         bidirectional=False, proj_size=0, *, dtype=np.float32, seed=None)
    c0 / c_n keep the hidden width H even with proj_size; h0, h_n and output use proj_size.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, *, dtype=np.float32, seed=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, dtype=dtype, seed=seed)

    def backward(self, d_output=None, d_h_n=None, d_c_n=None):
        """Returns (dx, dh0, dc0) and adds every parameter's gradient into ``grads``."""
        return self._backward(d_output, d_h_n, d_c_n)
