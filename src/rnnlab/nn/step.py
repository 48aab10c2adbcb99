"""One time step through every layer of a unidirectional layer (decoders, streaming)."""
import numpy as np

from ..checks import check_int
from ..errors import BackwardError
from ..sequence.kernels import get_num_threads
from ..sequence.stepper import (compiled_steps, frozen_weights, live_weights, step_layers,
                                step_plan)
from . import arguments as A
from .grad_mode import is_recording, no_grad
from .records import backprop_call, run_call


class Stepping:
    """``layer.step`` and ``layer.step_backward`` for RNNBase."""

    def step(self, input, state=None, *, dropout_masks=None):
        """One time step through every layer: y, state = layer.step(x_t, state).

        x_t (N, input_size) or (input_size,); state shaped like h0 (LSTM: (h, c)), None
        for zeros; y (N, H_out) is the last layer's new h. Same numbers as the layer on a
        length-1 sequence, dropout between layers included in training mode.
        Unidirectional layers only. Recorded for ``step_backward`` (last in, first out)
        when grad mode is on (training mode, or rnnlab.enable_grad()). Unrecorded steps
        at batch 1-4 of float32 layers of 2^17 weights and more run on the pair's two
        threads (rnnlab.sequence.pair_step) unless ``rnnlab.set_num_threads(1)``; with
        k >= 3 on k of numba's threads (see ``freeze`` for when not to).
        """
        if self.bidirectional or self.direction == "reverse":
            raise ValueError("step needs a forward layer: a reverse direction needs the "
                             "whole sequence")
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

    def freeze(self, threads=None):
        """A FrozenStep: ``layer.step`` for inference from a snapshot of the weights laid
        out for speed (row-major W^T; for RNN and LSTM one [x | h] matmul per layer; for
        RNN and LSTM layers of 2^19 weights and more, at batch 1-4, [W_ih | W_hh] in
        torch's layout, one BLAS matrix-vector product per row, which OpenBLAS splits over
        its own threads).

        threads: None (default): the pair's step for float32 layers of 2^17 weights and
        more at batch 1-4 (rnnlab.sequence.pair_step: the caller and rnnlab's worker
        thread, each half of the units) unless ``rnnlab.set_num_threads(1)``; with
        set_num_threads(k), k >= 3, numba's threads as below. 1: rnnlab starts no threads
        of its own (BLAS may use its threads, as for any NumPy matmul). 2: the pair's step.
        k >= 3: with numba installed, float32 GRU
        layers of 2^18 weights and more (H = 256), and LSTM layers between 2^18 and 2^19,
        split each step over k of numba's threads, each reading its own rows of the
        weights (~2.5x faster at batch 1 on 2 cores). Only when nothing between the steps
        runs threaded BLAS: OpenMP's and OpenBLAS's waiting threads then fight over the
        cores and both slow down many times, unless Python was started with
        OPENBLAS_THREAD_TIMEOUT=4 in the environment (OpenBLAS's idle threads then sleep;
        that in turn slows the steps that run on OpenBLAS's threads; BENCHMARKS.md)."""
        return FrozenStep(self, threads)

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


def _lean_arguments(layer, x, state):
    """(x (N, H_in), h (L, N, H_out), c or None, batched) for well-formed arrays; None for
    anything else (including every error case: the general path has the messages).
    Every check is a cheap attribute test: at batch 1 the whole step is ~10 us."""
    dt = layer.dtype
    if type(x) is not np.ndarray or x.dtype != dt:
        return None
    shape = x.shape
    batched = len(shape) == 2
    if not batched and len(shape) != 1 or shape[-1] != layer.input_size:
        return None
    N = shape[0] if batched else 1
    L, H = layer.num_layers, layer.hidden_size
    h_shape = (L, N, layer.proj_size or H)
    if state is None:
        return ((x if batched else x[None]), np.zeros(h_shape, dt),
                np.zeros((L, N, H), dt) if layer.family.has_cell_state else None, batched)
    c = None
    if layer.family.has_cell_state:
        if type(state) not in (tuple, list) or len(state) != 2:
            return None
        h, c = state
        if type(c) is not np.ndarray or c.dtype != dt:
            return None
        c = c if batched else c[:, None]
        if c.shape != (L, N, H):
            return None
    else:
        h = state
    if type(h) is not np.ndarray or h.dtype != dt:
        return None
    h = h if batched else h[:, None]
    if h.shape != h_shape:
        return None
    return (x if batched else x[None]), h, c, batched


def _checked_arguments(layer, x, state):
    """The same four values through the layer's full checks (which raise with torch's
    wording): for what _lean_arguments does not take."""
    x3, h0, c0, _, _, lay = A.prepare(layer, x, state, None, None, step=True)
    _, N, _ = x3.shape
    dt = layer.dtype
    if h0 is None:
        h0 = np.zeros((layer.num_layers, N, layer.proj_size or layer.hidden_size), dtype=dt)
        if layer.family.has_cell_state:
            c0 = np.zeros((layer.num_layers, N, layer.hidden_size), dtype=dt)
    return x3[0], h0, c0, lay.batched


def _step_result(h_new, c_new, batched):
    y = h_new[-1].copy()
    y.flags.writeable = False
    if not batched:
        y, h_new = y[0], h_new[:, 0]
        c_new = None if c_new is None else c_new[:, 0]
    return y, (h_new if c_new is None else (h_new, c_new))


def _live_step_weights(layer):
    """(StepWeights per layer, their step_plan), made once: views of the parameters,
    whose arrays change only with .to."""
    cache = layer.__dict__.get("_step_weights")
    if cache is None:
        weights = live_weights(layer.family, layer.weights())
        cache = layer.__dict__["_step_weights"] = (weights, step_plan(layer.family, weights))
    return cache


def _fast_step(layer, x, state):
    """The lean unrecorded step for well-formed arrays. None = not taken."""
    if layer.family.with_weights is not None:    # its step needs the weights: the driver
        return None
    args = _lean_arguments(layer, x, state)
    if args is None:
        return None
    x, h, c, batched = args
    weights, plan = _live_step_weights(layer)
    new = compiled_steps(x, plan, h, c)
    h_new, c_new = step_layers(layer.family, x, weights, h, c) if new is None else new
    if layer.num_layers > 1 or layer._records.last_dropout_masks:
        layer._records.last_dropout_masks = [None] * (layer.num_layers - 1)
    return _step_result(h_new, c_new, batched)


class FrozenStep:
    """``layer.freeze()``: inference steps from a snapshot of the weights laid out for
    speed (see rnnlab.sequence.stepper). ``y, state = frozen.step(x_t, state)`` takes and
    returns what ``layer.step`` does under no_grad in eval mode (no dropout, nothing
    recorded) and equals it to rounding.

    The snapshot follows the layer through rnnlab: after attribute assignment,
    ``load_state_dict``, an optimizer step or ``.to(dtype)`` the next step re-reads the
    weights. Writing into the parameter arrays yourself (``layer.weight_hh_l0[0] = 1``)
    cannot be seen: call ``frozen.refresh()`` afterwards.
    """

    def __init__(self, layer, threads=None):
        if layer.bidirectional or layer.direction == "reverse":
            raise ValueError("freeze needs a forward layer: a reverse direction needs the "
                             "whole sequence")
        self._given = threads is not None       # None: the pair's step as set_num_threads says
        self.threads = (get_num_threads() if threads is None
                        else check_int("freeze: threads", threads))
        self.layer = layer
        self.refresh()

    def refresh(self):
        """Take the snapshot again from the layer's current parameters."""
        layer = self.layer
        self._version = layer.__dict__.get("_version", 0)
        self._weights = None if layer.family.with_weights is not None else frozen_weights(
            layer.family, layer.weights(), self.threads if self._given else None)
        self._plan = None if self._weights is None else step_plan(layer.family, self._weights)
        return self

    def step(self, input, state=None):
        """One time step through every layer; see ``layer.step``."""
        layer = self.layer
        if layer.__dict__.get("_version", 0) != self._version:
            self.refresh()
        if self._weights is None:                # a family whose step needs the weights
            with no_grad():
                _, result = run_call(layer, input, state, None,
                                     [None] * (layer.num_layers - 1), step=True)
            return result
        args = _lean_arguments(layer, input, state)
        if args is None:
            args = _checked_arguments(layer, input, state)
        x, h, c, batched = args
        new = compiled_steps(x, self._plan, h, c)
        h_new, c_new = step_layers(layer.family, x, self._weights, h, c) if new is None else new
        return _step_result(h_new, c_new, batched)

    def __call__(self, input, state=None):
        return self.step(input, state)

    def __repr__(self):
        return f"FrozenStep({self.layer!r}" + (f", threads={self.threads})" if self.threads > 1
                                                else ")")
