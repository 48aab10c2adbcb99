"""Multi-layer recurrent layers with torch.nn's API: RNNBase, RNN, GRU, LSTM.

Thin classes: they hold parameters and gradients, check what users pass
(nn/arguments.py), keep per-thread call records (nn/records.py) and call the sequence
driver. ``RNNBase(mode, ...)`` builds a layer of any registered cell family.
"""
import numbers
import warnings

import numpy as np

from ..cells import by_mode
from ..cells.variants import LSTM_ONLY, OPTION_KEYS, family_for
from ..checks import check_bool, check_dropout, check_int
from ..errors import BackwardError
from ..sequence import LayerWeights, from_packed
from ..sequence.packed import is_packed, pack_like
from .grad_mode import why_not_recorded
from . import quick
from .module import Module
from .records import Call, backprop_call, last_recorded, run_call
from .step import Stepping


def param_names(k, d, bias, proj, peepholes=False):
    """torch's parameter names of layer k, direction d, as LayerWeights (None: absent);
    peepholes: an LSTM variant's weight_p_l{k} (p_i | p_o | p_f, ONNX's order)."""
    s = "_reverse" if d else ""
    return LayerWeights(f"weight_ih_l{k}{s}", f"weight_hh_l{k}{s}",
                        f"bias_ih_l{k}{s}" if bias else None, f"bias_hh_l{k}{s}" if bias else None,
                        f"weight_hr_l{k}{s}" if proj else None,
                        f"weight_p_l{k}{s}" if peepholes else None)


class RNNBase(Stepping, Module):
    """A multi-layer recurrent layer of one cell family. Shapes (D = 2 if bidirectional,
    H_out = proj_size or hidden_size): input (L, N, H_in), (N, L, H_in) with batch_first,
    or unbatched (L, H_in); h0 / h_n (D * num_layers, N, H_out); output (L, N, D * H_out),
    the last layer's h at every step (forward half, backward half)."""

    _pooled_grads = True

    _FIXED = ("mode", "family", "input_size", "hidden_size", "num_layers", "bias",
              "bidirectional", "proj_size", "nonlinearity", "reset_after", "direction")

    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, *, dtype=np.float32, seed=None, direction="forward"):
        super().__init__(dtype, seed, device)
        self.family = by_mode(mode)
        self.mode = self.family.mode
        self.dropout = check_dropout(dropout)
        self.input_size = check_int("input_size", input_size)
        self.hidden_size = check_int("hidden_size", hidden_size)
        self.num_layers = check_int("num_layers", num_layers)
        self.bias = check_bool("bias", bias)
        self.batch_first = check_bool("batch_first", batch_first)
        self.bidirectional = check_bool("bidirectional", bidirectional)
        if direction not in ("forward", "reverse"):
            raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
        if direction == "reverse" and self.bidirectional:
            raise ValueError("direction='reverse' is one direction over reversed time; "
                             "bidirectional=True already runs forward and reverse")
        self.direction = direction
        self.proj_size = _check_proj(proj_size)
        if self.proj_size and not self.family.supports_projection:
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        sets = () if self.family.variant is None else self.family.variant.activations
        if len(sets) > self.num_directions:
            raise ValueError(f"activations: {len(sets)} sets given (one per direction) for a "
                             "layer with one direction")
        if self.proj_size >= self.hidden_size:
            raise ValueError(f"proj_size has to be smaller than hidden_size, got proj_size="
                             f"{proj_size} and hidden_size={hidden_size}")
        if self.dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                          "non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        G, H, D, H_out = self.family.num_gates, self.hidden_size, self.num_directions, self._h_out
        shapes = {}
        for k in range(self.num_layers):
            in_k = self.input_size if k == 0 else D * H_out
            for d in range(D):
                for name, shape in zip(param_names(k, d, self.bias, self.proj_size,
                                                   self.family.peepholes),
                                       [(G * H, in_k), (G * H, H_out), (G * H,), (G * H,),
                                        (H_out, H), (3 * H,)]):
                    if name is not None:
                        shapes[name] = shape
        self._init_parameters(shapes, H)

    num_directions = property(lambda self: 2 if self.bidirectional else 1)
    _h_out = property(lambda self: self.proj_size or self.hidden_size)
    last_call = property(lambda self: self._records.last_call,
                         doc="This thread's most recent recorded forward (for backward(call=)).")
    last_dropout_masks = property(lambda self: self._records.last_dropout_masks,
                                  doc="The dropout masks of this thread's most recent call.")

    def names(self):
        """torch's parameter names per layer and direction (LayerWeights of names)."""
        names = self.__dict__.get("_names")
        if names is None:                    # the configuration is fixed: compute once
            names = [[param_names(k, d, self.bias, self.proj_size, self.family.peepholes)
                      for d in range(self.num_directions)] for k in range(self.num_layers)]
            self.__dict__["_names"] = names
        return names

    def weights(self):
        """The live parameters per layer and direction: a list over layers of a list over
        directions of LayerWeights(w_ih, w_hh, b_ih, b_hh, w_hr) (None where absent)."""
        cache = self.__dict__.get("_weights")
        if cache is None:                    # parameter arrays change only with .to(dtype)
            p = self._parameters
            cache = [[LayerWeights(*(None if n is None else p[n] for n in names))
                      for names in layer] for layer in self.names()]
            self.__dict__["_weights"] = cache
        return [list(layer) for layer in cache]

    def config(self):
        """The constructor arguments, JSON-serialisable: ``type(m)(**m.config())`` rebuilds
        the same layer (with fresh weights)."""
        cfg = dict(input_size=self.input_size, hidden_size=self.hidden_size,
                   num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                   dropout=self.dropout, bidirectional=self.bidirectional)
        if self.direction == "reverse":
            cfg["direction"] = "reverse"
        cfg.update(self._extra_config())
        cfg["dtype"] = self.dtype.name
        return cfg

    def _extra_config(self):
        return {"mode": self.mode, "proj_size": self.proj_size}

    def _variant_config(self):
        return {} if self.family.variant is None else dict(self.family.options)

    def __repr__(self):
        defaults = dict(num_layers=1, bias=True, batch_first=False, dropout=0.0,
                        bidirectional=False, proj_size=0, nonlinearity="tanh",
                        reset_after=True, direction="forward")
        s = f"{type(self).__name__}({self.input_size}, {self.hidden_size}"
        for key, value in self.config().items():
            if (key in defaults and value != defaults[key]) or key in OPTION_KEYS:
                s += f", {key}={value!r}"
        return s + ")"

    # -- forward / backward -----------------------------------------------------------
    def __call__(self, input, hx=None, lengths=None, **kwargs):
        return self.forward(input, hx, lengths, **kwargs)

    def forward(self, input, hx=None, lengths=None, *, dropout_masks=None):
        """output, h_n = layer(input, h0); LSTM: output, (h_n, c_n) = lstm(input, (h0, c0)).

        lengths: optional N ints; each sequence then stops at its own length, exactly like
        torch's pack_padded_sequence(enforce_sorted=False) -> layer -> pad_packed_sequence.
        A PackedSequence (torch's or rnnlab's) as input gives a PackedSequence output, as
        in torch. dropout_masks: optional masks (shaped like output, scaled by 1/(1-p))
        for the outputs of every layer but the last, used instead of drawing them (given
        masks always apply); the masks a call used are in ``last_dropout_masks``.
        """
        call = packed = None
        result = (quick.forward(self, input, hx)          # one sequence at inference, if it
                  if lengths is None and dropout_masks is None else None)   # can (nn/quick)
        if result is None:
            if is_packed(input):
                packed = input
                input, lengths = from_packed(input, batch_first=self.batch_first)
            call, result = run_call(self, input, hx, lengths, dropout_masks, step=False)
        rec = self._records
        rec.last_call = call
        rec.unrecorded_reason = None if call is not None else why_not_recorded(self)
        if packed is not None:
            out = result[0]
            out = out.transpose(1, 0, 2) if self.batch_first else out
            result = (pack_like(out, packed),) + tuple(result[1:])
            if call is not None:
                call.packed = packed
        return result

    def backward(self, d_output=None, d_h_n=None, *, call=None, retain_graph=False):
        """Backpropagate through this thread's most recent forward (or ``call``, a
        ``last_call`` kept from an earlier forward of this layer): returns (dx, dh0) shaped
        like input and h0 and adds every parameter's gradient into ``grads``. Then the
        forward's saved values are freed, as torch frees a graph: a second backward through
        the same forward needs retain_graph=True on the first (it adds the gradients
        again)."""
        return self._backward(call, d_output, d_h_n, None, retain_graph)

    def _backward(self, call, d_output, d_h_n, d_c_n, retain_graph):
        if call is None:
            call = last_recorded(self)
        if not isinstance(call, Call) or call.layout.step or call.owner() is not self:
            raise BackwardError("call must be a last_call record from this layer's forward")
        if call.packed is not None and is_packed(d_output):
            d_output = from_packed(d_output, batch_first=self.batch_first)[0]
        dx, *rest = backprop_call(self, call, d_output, d_h_n, d_c_n, retain_graph)
        if call.packed is not None:
            dx = pack_like(dx.transpose(1, 0, 2) if self.batch_first else dx, call.packed)
        return (dx, *rest)


class RNN(RNNBase):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh | relu.

    RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
        batch_first=False, dropout=0.0, bidirectional=False, device=None, *,
        dtype=np.float32, seed=None, direction="forward")

    direction="reverse" (keyword-only, every layer class; torch has none): one direction
    over reversed time, as ONNX's direction="reverse" (each sequence from its own last
    element, with lengths); parameters named as a forward layer's.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None, *,
                 dtype=np.float32, seed=None, direction="forward", **kwargs):
        variant = _variant_kwargs("RNN", kwargs)
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")
        super().__init__(family_for("rnn", nonlinearity=nonlinearity, **variant), input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype, seed=seed, direction=direction)
        # activations=["Relu"] is torch's relu RNN: say so (config and save/load read it)
        self.nonlinearity = (self.family.activation if self.family.variant is None
                             else nonlinearity)

    def _extra_config(self):
        return {"nonlinearity": self.nonlinearity, **self._variant_config()}


class GRU(RNNBase):
    """GRU with torch's gate order (r | z | n) and n = tanh(W_in x + b_in + r * (W_hn h + b_hn)).

    GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
        bidirectional=False, device=None, *, dtype=np.float32, seed=None, reset_after=True,
        direction="forward")

    reset_after=False (keyword-only; torch has no such option) is the GRU of the original
    paper, ONNX's linear_before_reset=0 and Keras's reset_after=False:
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn); same parameters (cells/gru_reset_before.py).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, *, dtype=np.float32,
                 seed=None, reset_after=True, direction="forward", **kwargs):
        variant = _variant_kwargs("GRU", kwargs)
        self.reset_after = check_bool("reset_after", reset_after)
        super().__init__(family_for("gru", reset_after=self.reset_after, **variant),
                         input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, device=device, dtype=dtype, seed=seed,
                         direction=direction)

    def _extra_config(self):
        return {**({} if self.reset_after else {"reset_after": False}),
                **self._variant_config()}


class LSTM(RNNBase):
    """LSTM with torch's gate order (i | f | g | o) and optional projection (proj_size).

    LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
         bidirectional=False, proj_size=0, device=None, *, dtype=np.float32, seed=None,
         direction="forward")
    c0 / c_n keep the hidden width H even with proj_size; h0, h_n and output use proj_size.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, *,
                 dtype=np.float32, seed=None, direction="forward", **kwargs):
        variant = _variant_kwargs("LSTM", kwargs, lstm=True)
        super().__init__(family_for("lstm", **variant), input_size, hidden_size, num_layers,
                         bias, batch_first, dropout, bidirectional, proj_size, device=device,
                         dtype=dtype, seed=seed, direction=direction)

    def _extra_config(self):
        return {"proj_size": self.proj_size, **self._variant_config()}

    def backward(self, d_output=None, d_h_n=None, d_c_n=None, *, call=None,
                 retain_graph=False):
        """Returns (dx, dh0, dc0) and adds every parameter's gradient into ``grads``; see
        RNNBase.backward for ``call`` and ``retain_graph``."""
        return self._backward(call, d_output, d_h_n, d_c_n, retain_graph)


def _check_proj(value):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"proj_size should be of type int, got: {type(value).__name__}")
    if value < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable "
                         f"projections, got {value}")
    return int(value)


def _variant_kwargs(name, kwargs, lstm=False):
    """The variant keywords of class ``name`` out of kwargs (the rest refused by name)."""
    if "proj_size" in kwargs:                     # LSTM takes it as an argument
        raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
    for key in LSTM_ONLY:
        if key in kwargs and not lstm:
            raise ValueError(f"{key} is only for LSTM, not {name}")
    variant = {k: kwargs.pop(k) for k in OPTION_KEYS if k in kwargs}
    if kwargs:
        raise TypeError(f"{name} got unexpected keyword argument(s) {sorted(kwargs)}")
    return variant
