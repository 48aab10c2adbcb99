"""Checking what users pass to a layer call, and bringing it to the driver's layout.

Every function raises TypeError / ShapeError / ValueError with torch's wording where torch
has one, before anything is changed.
"""
import numpy as np

from ..checks import float_array, gradient_array
from ..errors import ShapeError
from ..sequence import check_lengths
from ..sequence.checked import check_masks
from .layout import Layout


def check_state(layer, value, expected, lay, label):
    """One initial state in the user's layout -> time-major batched, or raise."""
    arr = float_array(value, layer.dtype, "hx")
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


def prepare(layer, input, hx, lengths, masks, step=False):
    """Validate input, states, lengths and dropout masks; return them time-major batched
    as (x, h0, c0, lengths, masks, layout)."""
    name = type(layer).__name__
    x = float_array(input, layer.dtype)
    dims = (1, 2) if step else (2, 3)
    if x.ndim not in dims:
        raise ShapeError(f"{name}{'.step' if step else ''}: Expected input to be "
                         f"{dims[0]}D or {dims[1]}D, got {x.ndim}D tensor instead")
    lay = Layout(batched=x.ndim == dims[1], batch_first=layer.batch_first, step=step)
    x = lay.seq_in(x)
    if x.shape[-1] != layer.input_size:
        raise ShapeError("input.size(-1) must be equal to input_size. Expected "
                         f"{layer.input_size}, got {x.shape[-1]}")
    T, N = x.shape[:2]
    if T == 0:
        raise ShapeError(f"{name}: Expected a sequence length greater than zero, got "
                         f"input of shape {tuple(np.shape(input))}")
    LD, H_out = layer.num_layers * layer.num_directions, layer.proj_size or layer.hidden_size
    h0 = c0 = None
    if layer.family.has_cell_state:
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError(f"{name}: hx must be a tuple (h0, c0), got {type(hx).__name__}")
            h0 = check_state(layer, hx[0], (LD, N, H_out), lay, "hidden[0]")
            c0 = check_state(layer, hx[1], (LD, N, layer.hidden_size), lay, "hidden[1]")
    elif hx is not None:
        if isinstance(hx, (tuple, list)):
            raise TypeError(f"{name}: hx must be an array, got a {type(hx).__name__}")
        h0 = check_state(layer, hx, (LD, N, H_out), lay, "hidden")
    if lengths is not None:
        if not lay.batched:
            raise ValueError("lengths needs batched 3-D input (one length per sequence)")
        lengths = check_lengths(lengths, T, N)
    if masks is not None:
        if not isinstance(masks, (list, tuple)):
            raise TypeError(f"dropout_masks must be a list (one per layer but the last), got "
                            f"{type(masks).__name__}")
        shape = lay.seq_shape(T, N, layer.num_directions * H_out)
        masks = [None if m is None else lay.seq_in(gradient_array(m, shape, layer.dtype,
                                                                  "dropout mask", cast=True))
                 for m in masks]
        masks = check_masks(masks, layer.num_layers, (T, N, layer.num_directions * H_out),
                            layer.dtype)
    return x, h0, c0, lengths, masks, lay


def upstream(layer, grad, like, convert, label):
    """An upstream gradient in the user's layout (shaped like the forward's output or
    state) -> time-major batched, or None."""
    if grad is None:
        return None
    g = gradient_array(grad, np.shape(like), layer.dtype, label)
    return convert(g)


def split_state(layer, d_state, where):
    """(dh, dc) from a state gradient shaped like the state (LSTM: a pair)."""
    if d_state is None:
        return None, None
    if layer.family.has_cell_state:
        if not isinstance(d_state, (tuple, list)) or len(d_state) != 2:
            raise TypeError(f"{where}: d_state must be a tuple (dh, dc), got "
                            f"{type(d_state).__name__}")
        return d_state[0], d_state[1]
    return d_state, None
