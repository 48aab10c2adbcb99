"""The records passed between the driver's forward and backward (and the layers above)."""
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

import numpy as np


class LayerWeights(NamedTuple):
    """One layer and direction's parameters in torch's layout (None where absent)."""
    w_ih: np.ndarray                    # (G*H, H_in or D*H_out)
    w_hh: np.ndarray                    # (G*H, H_out)
    b_ih: Optional[np.ndarray] = None   # (G*H,)
    b_hh: Optional[np.ndarray] = None   # (G*H,)
    w_hr: Optional[np.ndarray] = None   # (H_out, H), LSTM with proj_size only
    w_p: Optional[np.ndarray] = None    # (3*H,) peepholes p_i | p_o | p_f (LSTM variant)


class DirectionRecord(NamedTuple):
    """What one direction's forward keeps for its backward."""
    out: np.ndarray                     # (L, N, H_out) its outputs
    h0: np.ndarray                      # (N, H_out) its initial state (the driver's copy)
    h_prev: Optional[np.ndarray]        # (L, N, H_out) state before each step (lengths only)
    caches: Optional[list]              # per step, what the cell's back needs (None: the
    #                                     compiled forward ran; kernels.step_caches derives it)
    m_all: Optional[np.ndarray]         # (L, N, H) h before the projection (proj_size only)
    weights: LayerWeights               # the values the forward used (w_hh as w_hh^T)
    acts: Optional[np.ndarray] = None   # (L, N, G*H) every step's gate values and
    store: Optional[np.ndarray] = None  # (L, N, S*H) stored values: compiled forward only
    c0: Optional[np.ndarray] = None     # (N, H) the initial cell state (LSTM)
    w_hh: Optional[np.ndarray] = None   # (G*H, H_out) W_hh itself, row-major (compiled
    #                                     forward, where weights.w_hh is its transposed view:
    #                                     BPTT's compiled loop reads it so; a copy, not a
    #                                     transposed copy: 0.02 against 0.75 ms for an LSTM
    #                                     at H = 256)


@dataclass
class Dims:
    T: int          # steps (padded length)
    N: int          # sequences
    H: int          # hidden size
    H_out: int      # proj_size or H
    L: int          # layers
    D: int          # directions


@dataclass
class Cache:
    """A forward call's record. ``recorded`` is False for calls made without recording
    (inference): then only ``dropout_masks`` is meaningful and backward refuses it."""
    family: object
    dims: Dims
    dtype: np.dtype
    recorded: bool
    dropout_masks: list                 # per layer but the last: the mask used, or None
    inputs: list = field(default_factory=list)   # per layer: its input (L, N, H_in_k)
    saved: list = field(default_factory=list)    # per layer * D + direction: DirectionRecord
    masks: list = field(default_factory=list)    # per layer, in the driver's order
    perm: Optional[np.ndarray] = None   # batch order sorted by length (lengths only)
    sizes: Optional[np.ndarray] = None  # sequences running at each step (lengths only)
    bias: bool = True                   # the weights have biases
    reverse: bool = False               # one direction, over reversed time
