"""Multi-layer recurrent layers with torch.nn's API: RNN, GRU, LSTM.

Thin classes: they hold parameters and gradients, check and reshape what users pass,
and call rnnlab.functional.forward / backward.
"""
import numbers
import warnings
import weakref

import numpy as np

from . import functional as F
from ._pool import Pool
from ._module import (BackwardError, Module, ShapeError, as_input, check_bool, check_int,
                      recording, to_numpy)


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
        self._clear_cache()

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

    _RECORDS = ("last_call", "last_dropout_masks", "_steps", "_pool")

    def _clear_cache(self):
        self.last_call = None
        self.last_dropout_masks = []
        self._steps = []
        self._pool = Pool()

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

    def _check_state(self, value, expected, lay, label):
        """One initial state in the user's layout -> time-major batched, or raise."""
        arr = as_input(value, self.dtype, "hx")
        want_ndim = 3 if lay.batched else 2
        if arr.ndim != want_ndim:
            kind = "batched 3-D" if lay.batched else "unbatched 2-D"
            if lay.step:
                kind = "batched 2-D" if lay.batched else "unbatched 1-D"
            raise ShapeError(f"For {kind} input, hx should also be {want_ndim}-D but got "
                             f"{arr.ndim}-D tensor")
        arr = lay.state_in(arr)
        if arr.shape != expected:
            exp = expected if lay.batched else (expected[0], expected[2])
            raise ShapeError(f"Expected {label} size {exp}, got {list(lay.state_out(arr).shape)}")
        return arr

    def _prepare(self, input, hx, lengths, step=False):
        """Validate and bring input, states and lengths to the time-major batched layout."""
        name = type(self).__name__
        x = as_input(input, self.dtype)
        dims = (1, 2) if step else (2, 3)
        if x.ndim not in dims:
            raise ShapeError(f"{name}{'.step' if step else ''}: Expected input to be "
                             f"{dims[0]}D or {dims[1]}D, got {x.ndim}D tensor instead")
        lay = _Layout(batched=x.ndim == dims[1], batch_first=self.batch_first, step=step)
        x = lay.seq_in(x)
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
                h0 = self._check_state(hx[0], (LD, N, self._h_out), lay, "hidden[0]")
                c0 = self._check_state(hx[1], (LD, N, self.hidden_size), lay, "hidden[1]")
        elif hx is not None:
            if isinstance(hx, (tuple, list)):
                raise TypeError(f"{name}: hx must be an array, got a {type(hx).__name__}")
            h0 = self._check_state(hx, (LD, N, self._h_out), lay, "hidden")
        if lengths is not None:
            if not lay.batched:
                raise ValueError("lengths needs batched 3-D input (one length per sequence)")
            lengths = self._check_lengths(lengths, T, N)
        return x, h0, c0, lengths, lay

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

    @staticmethod
    def _masks_in(masks, lay):
        """Dropout masks in the user's layout -> time-major (counts checked by the driver)."""
        return None if masks is None else [None if m is None else lay.seq_in(to_numpy(m))
                                           for m in masks]

    def _run(self, input, hx, lengths, dropout_masks, step):
        x, h0, c0, lengths, lay = self._prepare(input, hx, lengths, step)
        masks = self._masks_in(dropout_masks, lay)
        if not step:
            self.last_call = None           # its buffers may serve this call unless kept elsewhere
        lease = self._pool.lease()
        (out, h_n, c_n), cache = F.forward(
            self.mode, x, self._weights(), h0, c0, dropout=self.dropout,
            training=self.training, rng=self._rng, lengths=lengths, masks=masks, lease=lease)
        output = lay.seq_out(out)
        output.flags.writeable = False      # backward reads it: copy before changing in place
        h_n = lay.state_out(h_n)
        c_n = None if c_n is None else lay.state_out(c_n)
        call = _Call(cache, lay, output, h_n, c_n)
        weakref.finalize(call, lease.release)   # buffers go back when the record is garbage
        self.last_dropout_masks = [None if m is None else lay.seq_out(m)
                                   for m in cache["dropout_masks"]]
        return call, ((output, (h_n, c_n)) if self._is_lstm else (output, h_n))

    def _grad_in(self, grad, like, convert, label):
        """An upstream gradient from the user's layout to time-major batched."""
        g = self._upstream(grad, like.shape, label, f"the shape of the forward's {label[2:]}")
        return None if g is None else convert(g)

    def _backward_call(self, call, d_output, d_h_n, d_c_n, **kwargs):
        """rnnlab.functional.backward for one call record, gradients given in the user's
        layout; returns its dict untouched (parameter gradients not yet added)."""
        lay = call.layout
        return F.backward(call.cache,
                          self._grad_in(d_output, call.output, lay.seq_in, "d_output"),
                          self._grad_in(d_h_n, call.h_n, lay.state_in, "d_h_n"),
                          None if call.c_n is None else
                          self._grad_in(d_c_n, call.c_n, lay.state_in, "d_c_n"),
                          pool=self._pool, **kwargs)

    def _backprop(self, call, d_output, d_h_n, d_c_n):
        lay = call.layout
        g = self._backward_call(call, d_output, d_h_n, d_c_n)
        for names, dws in zip(self._names(), g["dweights"]):
            for n, dw in zip(names, dws):
                self._add_grads(n, dw)
        dx, dh0 = lay.seq_out(g["dx"]), lay.state_out(g["dh0"])
        return (dx, dh0, lay.state_out(g["dc0"])) if self._is_lstm else (dx, dh0)

    # -- forward / backward -----------------------------------------------------------
    def __call__(self, input, hx=None, lengths=None, **kwargs):
        return self.forward(input, hx, lengths, **kwargs)

    def forward(self, input, hx=None, lengths=None, *, dropout_masks=None):
        """output, h_n = layer(input, h0); LSTM: output, (h_n, c_n) = lstm(input, (h0, c0)).

        lengths: optional N ints; each sequence then stops at its own length, exactly like
        torch's pack_padded_sequence(enforce_sorted=False) -> layer -> pad_packed_sequence.
        dropout_masks: optional masks (shaped like output, scaled by 1/(1-p)) for the
        outputs of every layer but the last, used instead of drawing them (also in eval
        mode: given masks always apply); the masks a call used are in
        ``last_dropout_masks``. The call's record is ``last_call``.
        """
        self.last_call, result = self._run(input, hx, lengths, dropout_masks, step=False)
        return result

    def _backward(self, d_output, d_h_n, d_c_n, call):
        call = call if call is not None else getattr(self, "last_call", None)
        if call is None:
            raise BackwardError(f"{type(self).__name__}.backward called before forward")
        if not isinstance(call, _Call) or call.layout.step:
            raise BackwardError("call must be a layer's last_call record from forward")
        return self._backprop(call, d_output, d_h_n, d_c_n)

    def backward(self, d_output=None, d_h_n=None, *, call=None):
        """Backpropagate through the most recent forward (or the given ``call``, a
        ``last_call`` record kept from an earlier forward): returns (dx, dh0) shaped like
        input and h0, and adds every parameter's gradient into ``grads``. May be called
        again for the same forward: gradients then add up."""
        return self._backward(d_output, d_h_n, None, call)

    # -- one step at a time -------------------------------------------------------------
    def step(self, input, state=None, *, dropout_masks=None):
        """One time step through every layer: y, state = layer.step(x_t, state).

        x_t (N, input_size) or (input_size,); state shaped like h0 (LSTM: (h, c)), None
        for zeros; y (N, H_out) is the last layer's new h. Same numbers as the layer on a
        length-1 sequence, dropout between layers included in training mode.
        Unidirectional layers only. Each call is recorded for ``step_backward`` (LIFO),
        except inside ``with rnnlab.no_grad():``.
        """
        if self.bidirectional:
            raise ValueError("step needs a unidirectional layer: the reverse direction of a "
                             "bidirectional layer needs the whole sequence")
        call, (y, state) = self._run(input, state, None, dropout_masks, step=True)
        if recording():
            self._steps.append(call)
        return y, state

    def step_backward(self, d_y=None, d_state=None):
        """Undo the most recent step not yet undone (last in, first out). d_state is shaped
        like state (LSTM: (dh, dc), either may be None). Returns (dx_t, d_state_prev) and
        adds parameter gradients into ``grads``."""
        if not self._steps:
            raise BackwardError(f"{type(self).__name__}.step_backward: no step left to undo")
        dh = dc = None
        if self._is_lstm and d_state is not None:
            if not isinstance(d_state, (tuple, list)) or len(d_state) != 2:
                raise TypeError("LSTM.step_backward: d_state must be a tuple (dh, dc)")
            dh, dc = d_state
        elif d_state is not None:
            dh = d_state
        grads = self._backprop(self._steps[-1], d_y, dh, dc)
        self._steps.pop()
        return (grads[0], (grads[1], grads[2])) if self._is_lstm else grads


class _Call:
    """What one forward or step call leaves for its backward."""

    def __init__(self, cache, layout, output, h_n, c_n):
        self.cache, self.layout, self.output, self.h_n, self.c_n = cache, layout, output, h_n, c_n


class _Layout:
    """The user's layout of one call, and the conversions to and from the time-major
    batched arrays of rnnlab.functional."""

    def __init__(self, batched, batch_first, step):
        self.batched, self.batch_first, self.step = batched, batch_first, step

    def seq_in(self, a):
        """input / output / dropout mask shaped: user -> (L, N, F)."""
        if self.step:
            return a[None] if self.batched else a[None, None]
        if not self.batched:
            return a[:, None]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def seq_out(self, a):
        if self.step:
            return a[0] if self.batched else a[0, 0]
        if not self.batched:
            return a[:, 0]
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if self.batch_first else a

    def state_in(self, a):
        """h0 / h_n shaped: user -> (num_layers * D, N, H)."""
        return a if self.batched else a[:, None]

    def state_out(self, a):
        return a if self.batched else a[:, 0]


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

    def backward(self, d_output=None, d_h_n=None, d_c_n=None, *, call=None):
        """Returns (dx, dh0, dc0) and adds every parameter's gradient into ``grads``."""
        return self._backward(d_output, d_h_n, d_c_n, call)
