"""One-step cells with torch.nn's API: RNNCell, GRUCell, LSTMCell (and RNNCellBase for
any registered family).

A cell is the sequence driver run for one step, one layer, one direction, so a loop of
cells computes exactly what the layer computes. When grad mode is on (training mode, or
inside rnnlab.enable_grad()) each call is recorded; ``backward`` undoes the most recent
call not yet undone (last in, first out), so a hand-written loop over time can be
backpropagated step by step. In eval mode or under rnnlab.no_grad() nothing is kept.
"""
import numpy as np

from ..cells import by_mode
from ..cells.variants import ACTIVATION_KEYS, OPTION_KEYS, family_for
from ..checks import check_bool, check_int, float_array, gradient_array
from ..errors import BackwardError, ShapeError
from ..sequence import LayerWeights, run_backward, run_forward
from .grad_mode import is_recording, why_not_recorded
from .module import Module

_NAMES = LayerWeights("weight_ih", "weight_hh", "bias_ih", "bias_hh", None)


class RNNCellBase(Module):
    """A cell of any registered family: RNNCellBase(mode, input_size, hidden_size, bias)."""

    _FIXED = ("mode", "family", "input_size", "hidden_size", "bias", "nonlinearity",
              "reset_after")

    def __init__(self, mode, input_size, hidden_size, bias=True, device=None, *,
                 dtype=np.float32, seed=None):
        super().__init__(dtype, seed, device)
        self.family = by_mode(mode)
        self.mode = self.family.mode
        self.input_size = check_int("input_size", input_size)
        self.hidden_size = check_int("hidden_size", hidden_size)
        self.bias = check_bool("bias", bias)
        G, H = self.family.num_gates, self.hidden_size
        shapes = {"weight_ih": (G * H, self.input_size), "weight_hh": (G * H, H)}
        if self.bias:
            shapes.update(bias_ih=(G * H,), bias_hh=(G * H,))
        if self.family.peepholes:
            shapes["weight_p"] = (3 * H,)
        self._init_parameters(shapes, H)

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            extra += f", nonlinearity={self.nonlinearity!r}"
        if not getattr(self, "reset_after", True):
            extra += ", reset_after=False"
        if self.family.variant is not None:
            extra += "".join(f", {k}={v!r}" for k, v in self.family.options.items()
                             if k in OPTION_KEYS)
        return f"{type(self).__name__}({self.input_size}, {self.hidden_size}{extra})"

    def config(self):
        """The constructor arguments, JSON-serialisable."""
        cfg = dict(input_size=self.input_size, hidden_size=self.hidden_size, bias=self.bias)
        if type(self) is RNNCellBase:
            cfg["mode"] = self.mode
        if hasattr(self, "nonlinearity"):
            cfg["nonlinearity"] = self.nonlinearity
        if not getattr(self, "reset_after", True):
            cfg["reset_after"] = False
        if self.family.variant is not None:
            cfg.update((k, v) for k, v in self.family.options.items() if k in OPTION_KEYS)
        cfg["dtype"] = self.dtype.name
        return cfg

    def names(self):
        names = _NAMES if self.bias else LayerWeights("weight_ih", "weight_hh")
        return names._replace(w_p="weight_p") if self.family.peepholes else names

    def weights(self):
        """The live parameters as LayerWeights(w_ih, w_hh, b_ih, b_hh, None)."""
        return LayerWeights(*(None if n is None else self._parameters[n] for n in self.names()))

    @property
    def pending(self):
        """How many recorded calls of this thread wait for their backward."""
        return len(self._records.tape)

    def _state(self, value, batched, N, label):
        if value is None:
            return None
        name = type(self).__name__
        arr = float_array(value, self.dtype, "hx")
        if arr.ndim not in (1, 2):
            raise ShapeError(f"{name}: Expected {label} to be 1D or 2D, got {arr.ndim}D instead")
        if (arr.ndim == 2) != batched:
            raise ShapeError(f"{name}: {label} must be {'2' if batched else '1'}-D like the "
                             f"{'batched' if batched else 'unbatched'} input, got {arr.ndim}-D")
        arr = arr if batched else arr[None]
        if arr.shape[0] != N:
            raise ShapeError(f"Input batch size {N} doesn't match {label} batch size "
                             f"{arr.shape[0]}")
        if arr.shape[1] != self.hidden_size:
            raise ShapeError(f"{label} has inconsistent hidden_size: got {arr.shape[1]}, "
                             f"expected {self.hidden_size}")
        return arr[None]                                       # (1, N, H): one layer, one direction

    def _run(self, input, h0, c0):
        name = type(self).__name__
        x = float_array(input, self.dtype)
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
        record = is_recording(self)
        (_, h1, c1), cache = run_forward(self.family, x[None], [[self.weights()]], h0, c0,
                                         record=record)
        if record:
            self._records.tape.append((cache, batched))
        h1 = h1[0] if batched else h1[0, 0]
        if c1 is None:
            return h1
        return h1, (c1[0] if batched else c1[0, 0])

    def _grad(self, g, N, batched, label):
        """dh1 / dc1 -> (1, N, H) for the driver."""
        if g is None:
            return None
        g = gradient_array(g, (N, self.hidden_size) if batched else (self.hidden_size,),
                           self.dtype, label)
        return (g if batched else g[None])[None]

    def _backward(self, dh1, dc1):
        tape = self._records.tape
        if not tape:
            why = "" if is_recording(self) else f" (nothing is recorded: {why_not_recorded(self)})"
            raise BackwardError(f"{type(self).__name__}.backward: no forward call left to "
                                "undo (each call can be backpropagated once, last in first "
                                "out)" + why)
        cache, batched = tape[-1]
        N = cache.dims.N
        dh1 = self._grad(dh1, N, batched, "dh1")
        dc1 = self._grad(dc1, N, batched, "dc1") if self.family.has_cell_state else None
        g = run_backward(cache, None, dh1, dc1)
        tape.pop()
        self._add_grads(zip(self.names(), g["dweights"][0][0]))
        out = [g["dx"][0], g["dh0"][0]] + ([] if g["dc0"] is None else [g["dc0"][0]])
        return tuple(a if batched else a[0] for a in out)

    def __call__(self, input, hx=None):
        return self.forward(input, hx)

    def forward(self, input, hx=None):
        """h1 = cell(x, h0); with a cell state (LSTM) h1, c1 = cell(x, (h0, c0)).
        A missing state means zeros."""
        if not self.family.has_cell_state:
            return self._run(input, hx, None)
        if hx is None:
            return self._run(input, None, None)
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise TypeError(f"{type(self).__name__}: hx must be a tuple (h0, c0), got "
                            f"{type(hx).__name__}")
        if (hx[0] is None) != (hx[1] is None):
            raise TypeError(f"{type(self).__name__}: give both h0 and c0, or neither")
        return self._run(input, hx[0], hx[1])

    def backward(self, dh1=None, dc1=None):
        """Undo the most recent recorded call: returns (dx, dh0) (with a cell state:
        (dx, dh0, dc0)); either gradient may be None. Adds parameter gradients to grads."""
        if dc1 is not None and not self.family.has_cell_state:
            raise TypeError(f"{type(self).__name__}.backward takes dh1 only (no cell state)")
        return self._backward(dh1, dc1)


class RNNCell(RNNCellBase):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh | relu.

    x (N, input_size) or (input_size,); h (N, hidden_size) or (hidden_size,).
    """

    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 *, dtype=np.float32, seed=None, **variant):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(family_for("rnn", nonlinearity=nonlinearity,
                                    **_variant("RNNCell", variant, _NOT_LSTM)),
                         input_size, hidden_size, bias, device, dtype=dtype, seed=seed)
        # activations=["Relu"] is torch's relu RNN: say so (config and save/load read it)
        self.nonlinearity = (self.family.activation if self.family.variant is None
                             else nonlinearity)


class GRUCell(RNNCellBase):
    """r, z = s(...), n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) n + z h.
    Gate row blocks (r | z | n). reset_after=False (keyword-only, not in torch): n =
    tanh(W_in x + b_in + W_hn (r * h) + b_hn), as GRU(reset_after=False)."""

    def __init__(self, input_size, hidden_size, bias=True, device=None, *, dtype=np.float32,
                 seed=None, reset_after=True, **variant):
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(family_for("gru", reset_after=self.reset_after,
                                    **_variant("GRUCell", variant, _NOT_LSTM)),
                         input_size, hidden_size, bias, device, dtype=dtype, seed=seed)


class LSTMCell(RNNCellBase):
    """i, f, g, o gates (rows i | f | g | o); c' = f c + i g; h' = o tanh(c').

    h1, c1 = cell(x, (h0, c0)) or cell(x); backward(dh1, dc1) -> (dx, dh0, dc0).
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, *, dtype=np.float32,
                 seed=None, **variant):
        super().__init__(family_for("lstm", **_variant("LSTMCell", variant, OPTION_KEYS)),
                         input_size, hidden_size, bias, device, dtype=dtype, seed=seed)


_NOT_LSTM = ACTIVATION_KEYS + ("cell_clip",)       # the variant keywords of RNN and GRU cells


def _variant(name, kwargs, taken):
    """The variant keywords a cell takes (``taken``), the rest refused."""
    bad = sorted(set(kwargs) - set(taken))
    if bad:
        raise TypeError(f"{name} got unexpected keyword argument(s) {bad}")
    return kwargs


def run_cells(cell, xs, state=None):
    """A cell in a plain Python loop over time: the hand-written alternative to a layer.

    xs (L, N, input_size) or (L, input_size); state h0, or (h0, c0) for LSTMCell, or None.
    Returns (hs, state): hs (L, N, H) stacks every step's h; state is the final h (LSTM:
    (h, c)). Each step is recorded for ``backprop_cells`` when grad mode is on.
    """
    has_c = cell.family.has_cell_state
    hs = []
    for x_t in xs:
        state = cell(x_t, state)
        hs.append(state[0] if has_c else state)
    return np.stack(hs), state


def backprop_cells(cell, d_hs, d_state=None):
    """BPTT by hand through the steps of ``run_cells``, last step first.

    d_hs (L, N, H): gradient on every step's h; d_state: on the final state (LSTM:
    (dh, dc), either may be None). Returns (dxs, d_state0); parameter gradients are added
    into cell.grads. Everything is checked before the first step is undone.
    """
    has_c = cell.family.has_cell_state
    d_hs = gradient_array(d_hs, np.shape(d_hs), cell.dtype, "d_hs")
    if d_hs.ndim < 2 or len(d_hs) == 0:
        raise ShapeError(f"d_hs must be (L, N, H) or (L, H), got shape {d_hs.shape}")
    if len(d_hs) > cell.pending:
        raise BackwardError(f"backprop_cells: {len(d_hs)} steps of d_hs but only "
                            f"{cell.pending} recorded calls wait for their backward")
    cache, batched = cell._records.tape[-1]
    want = (cell.hidden_size,) if not batched else (cache.dims.N, cell.hidden_size)
    if d_hs.shape[1:] != want:
        raise ShapeError(f"d_hs must be ({len(d_hs)}, {', '.join(map(str, want))}) like the "
                         f"steps' h, got {d_hs.shape}")
    if has_c:
        if d_state is not None and (not isinstance(d_state, (tuple, list)) or len(d_state) != 2):
            raise TypeError("backprop_cells: d_state must be a tuple (dh, dc) for LSTMCell")
        dh, dc = d_state if d_state is not None else (None, None)
    else:
        dh, dc = d_state, None
    for g, label in ((dh, "d_state (dh)"), (dc, "d_state (dc)")):
        if g is not None:
            gradient_array(g, want, cell.dtype, label)
    dxs = [None] * len(d_hs)
    for t in range(len(d_hs) - 1, -1, -1):
        dh = d_hs[t] if dh is None else dh + d_hs[t]        # from the output + from the future
        if has_c:
            dxs[t], dh, dc = cell.backward(dh, dc)
        else:
            dxs[t], dh = cell.backward(dh)
    return np.stack(dxs), ((dh, dc) if has_c else dh)
