"""One time step through every layer of a unidirectional layer (decoders, streaming)."""
from ..errors import BackwardError
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
