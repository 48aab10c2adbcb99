"""Cell families: what one step of RNN, GRU or LSTM computes, forward and backward.

One module per family (rnn.py, gru.py, lstm.py) holds its equations, a fast step and
back (the contract below, used by the sequence driver), a plain step and back (one
sequence, readable, used by rnnlab.reference) and one ``Family`` record. Everything else
in rnnlab — driver, layers, cells, explain, conformance, gradcheck, bench, converters —
reads families from ``FAMILIES``; adding a family is its module plus one ``register``
line below (docs/families.md shows a complete example).

Fast cell contract (arrays (N, ...) for the N sequences running at this step):

    step(gx, gh, h, c, h_new, store) -> (c_new, cache)
        gx = x W_ih^T + b_ih (+ b_hh of the first FOLD gates)   (N, G*H), this step's own
              buffer: the step may overwrite it and keep it (activations live there)
        gh = h W_hh^T (+ b_hh of the other gates)                (N, G*H), scratch;
              None when the family says ``fused_step`` (FOLD == G only) and the caller
              has added h W_hh^T + b_hh into gx already (one [x | h] matmul)
        h, c       (N, H) previous state; c is None unless the family has a cell state
        h_new      (N, H) buffer the new hidden state is written into
        store      (N, STORE*H) buffer the step may keep for its backward
    back(dh_new, dc_new, cache, dgx, dgr) -> (dh_direct, dc_prev)
        dgx        (N, G*H) written with the gradient of gx; for the first FOLD gates it
                   is also the gradient of gh
        dgr        (N, (G-FOLD)*H), None when FOLD == G: the gradient of gh there
        dh_direct  (N, H) or None: the part of dh_prev that does not flow through W_hh
        dc_prev    (N, H) or None
        dh_new may be None (families with a cell state only): no gradient reaches the
                   new h from outside, only c';
        dc_new may be None: no gradient reaches the new cell state from outside

Plain contract (one sequence, 1-D vectors, p has w_ih, w_hh, b_ih, b_hh; zeros when the
layer has no bias):

    plain_step(x, h, c, p) -> (h_new, c_new, gates)        gates: dict of named vectors
    plain_back(dh_new, dc_new, x, h, c, h_new, gates, p) -> (dx, dh, dc, dp)
        dp: dict with the gradients of w_ih, w_hh, b_ih, b_hh for this step
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True)
class Family:
    """Everything rnnlab knows about one cell family."""
    kind: str                       # registry key and command-line name: "gru"
    mode: str                       # torch's mode string: "GRU", "RNN_TANH", ...
    num_gates: int                  # G: row blocks of H in W_ih / W_hh
    gate_names: tuple               # letters of the row blocks ("r", "z", "n"); () for RNN
    fold: int                       # leading gates whose b_hh folds into the projection
    store: int                      # (N, H) blocks a fast step keeps for its backward
    step: Callable
    back: Callable
    plain_step: Callable
    plain_back: Callable
    equations: tuple                # one line each, the code's letters
    has_cell_state: bool = False    # LSTM: the state is (h, c)
    torch_class: Optional[str] = None   # torch.nn class computing the same (None: none)
    options: dict = field(default_factory=dict)   # constructor keywords of that class
    supports_projection: bool = False    # proj_size (LSTM only in torch)
    #: framework -> the torch gate block at each position of that framework's layout
    gate_order: dict = field(default_factory=dict)
    fused_step: bool = False        # step accepts gh=None (all of it already in gx)
    listed: bool = True             # offered as a CLI kind (RNN's relu goes through --nonlinearity)


def to_framework(w, family, framework):
    """Reorder the G row blocks of w ((G*H, ...) or (G*H,)) from torch's gate order to
    ``framework``'s (``family.gate_order[framework]``: the torch block at each position)."""
    order = family.gate_order[framework]
    H = w.shape[0] // len(order)
    return np.concatenate([w[j * H:(j + 1) * H] for j in order])


def from_framework(w, family, framework):
    """The inverse of to_framework: ``framework``'s gate order -> torch's."""
    order = family.gate_order[framework]
    H = w.shape[0] // len(order)
    out = np.empty_like(w)
    for pos, j in enumerate(order):
        out[j * H:(j + 1) * H] = w[pos * H:(pos + 1) * H]
    return out


FAMILIES = {}       # kind -> Family
_BY_MODE = {}       # mode -> Family


def register(family):
    """Add a family; layers, cells, explain, gradcheck and bench then offer it."""
    if family.kind in FAMILIES and FAMILIES[family.kind] is not family:
        raise ValueError(f"a cell family named {family.kind!r} is already registered")
    FAMILIES[family.kind] = family
    _BY_MODE[family.mode] = family
    return family


def unregister(kind):
    family = FAMILIES.pop(kind)
    _BY_MODE.pop(family.mode, None)


def by_mode(mode):
    try:
        return _BY_MODE[mode]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mode {mode!r}; registered: {sorted(_BY_MODE)}") from None


def by_kind(kind):
    try:
        return FAMILIES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell family {kind!r}; choose from {sorted(FAMILIES)}") \
            from None


from . import gru, lstm, rnn  # noqa: E402  (the modules import Family from here)

register(rnn.TANH)
register(rnn.RELU)
register(gru.FAMILY)
register(lstm.FAMILY)
