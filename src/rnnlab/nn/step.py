"""One time step through every layer of a unidirectional layer (decoders, streaming)."""
import numpy as np

from ..errors import BackwardError
from ..sequence.driver import step_inference
from . import arguments as A
from .grad_mode import is_recording
from .records import backprop_call, run_call


class Stepping:
    """``layer.step`` and ``layer.step_backward`` for RNNBase."""

    def step(self, input, state=None, *, dropout_masks=None):
        """One time step through every layer: y, state = layer.step(x_t, state).

        x_t (N, input_size) or (input_size,); state shaped like h0 (LSTM: (h, c)), None
        for zeros; y (N, H_out) is the last layer's new h. Same numbers as the layer on a
        length-1 sequence, dropout between layers included in training mode.
        Unidirectional layers only. Recorded for ``step_backward`` (last in, first out)
        when grad mode is on (training mode, or rnnlab.enable_grad()).
        """
        if self.bidirectional:
            raise ValueError("step needs a unidirectional layer: the reverse direction of a "
                             "bidirectional layer needs the whole sequence")
        fast = None
        if dropout_masks is None and not is_recording(self) and not (
                self.training and self.dropout > 0 and self.num_layers > 1):
            fast = _fast_step(self, input, state)
        if fast is not None:
            return fast
        call, (y, state) = run_call(self, input, state, None, dropout_masks, step=True)
        if call is not None:
            self._records.steps.append(call)
        return y, state

    def step_backward(self, d_y=None, d_state=None):
        """Undo the most recent step not yet undone (last in, first out). d_state is shaped
        like state (LSTM: (dh, dc), either may be None). Returns (dx_t, d_state_prev) and
        adds parameter gradients into ``grads``."""
        steps = self._records.steps
        if not steps:
            why = "" if is_recording(self) else (" (steps are recorded only in training mode "
                                                 "or inside rnnlab.enable_grad())")
            raise BackwardError(f"{type(self).__name__}.step_backward: no step left to undo"
                                + why)
        dh, dc = A.split_state(self, d_state, f"{type(self).__name__}.step_backward")
        grads = backprop_call(self, steps[-1], d_y, dh, dc)
        steps.pop()
        return (grads[0], (grads[1], grads[2])) if len(grads) == 3 else grads


def _fast_step(layer, x, state):
    """The lean unrecorded step for well-formed arrays (anything else, including every
    error case, goes through the general path and its messages). None = not taken."""
    dt, I = layer.dtype, layer.input_size
    if type(x) is not np.ndarray or x.dtype != dt or x.ndim not in (1, 2) or x.shape[-1] != I:
        return None
    batched = x.ndim == 2
    N = x.shape[0] if batched else 1
    LD, H_out, H = layer.num_layers, layer.proj_size or layer.hidden_size, layer.hidden_size
    has_c = layer.family.has_cell_state
    want = [(LD, N, H_out)] + ([(LD, N, H)] if has_c else [])
    if state is None:
        parts = [np.zeros(s, dtype=dt) for s in want]
    else:
        parts = list(state) if has_c and isinstance(state, (tuple, list)) else [state]
        if len(parts) != len(want):
            return None
        for i, (p, s) in enumerate(zip(parts, want)):
            if type(p) is not np.ndarray or p.dtype != dt:
                return None
            p = p if batched else p[:, None]
            if p.shape != s:
                return None
            parts[i] = p
    h_new, c_new = step_inference(layer.family, x if batched else x[None], layer.weights(),
                                  parts[0], parts[1] if has_c else None)
    layer._records.last_dropout_masks = [None] * (layer.num_layers - 1)
    y = h_new[-1].copy()
    y.flags.writeable = False
    if not batched:
        y, h_new = y[0], h_new[:, 0]
        c_new = None if c_new is None else c_new[:, 0]
    return y, ((h_new, c_new) if has_c else h_new)
