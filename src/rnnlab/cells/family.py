"""The ``Family`` record: everything rnnlab knows about one cell family, in one place.

Every other room reads families through this record (layers, driver, kernels, explain,
conformance, converters); nothing outside ``cells/`` asks a family for its name to decide
what to do.

The step contract (arrays (N, ...) for the N sequences running at one time step):

    step(gx, gh, h, c, h_new, store) -> (c_new, cache)
        gx = x W_ih^T + b_ih (+ b_hh of the first FOLD gates)   (N, G*H), this step's own
              buffer: the step overwrites it with the gate values (``gate_names`` order)
        gh = h W_hh^T (+ b_hh of the other gates)                (N, G*H), scratch;
              None when the family says ``fused_step`` (FOLD == G only) and the caller
              has added h W_hh^T + b_hh into gx already (one [x | h] matmul)
        h, c       (N, H) previous state; c is None unless the family has a cell state
        h_new      (N, H) buffer the new hidden state is written into
        store      (N, S*H) buffer for the values named by ``store_names`` (blocks of H)
        cache      always (gx, store, h, c): the gate values, the stored values and the
                   state before the step. The compiled loops leave the same four in the
                   same layout, so either backward reads either forward's record.
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

Scalar units (``Units``, optional: the compiled float32 loops of rnnlab[fast]). One unit
j of one row, written once with scalars and the names ``sigmoid``, ``tanh``, ``relu``,
``ONE``, ``ZERO`` (NumPy's in the family module; the compiled module binds its own float32
versions); every compiled loop shape (whole sequence, one step, the gates from BLAS's
products, the threaded step) calls them:

    forward(a, xa, hp, cp, u, h_out, c_out, lo, hi, H, keep)    units lo..hi of one row
        a      (G*H) pre-activations: x W_i + b_i + h W_h + b_h of the FOLD gates, then
               h W_h + b_h of the others;  xa (G*H): x W_i + b_i of the others at their
               own positions;  hp, cp: the previous h (and c) row
        h_out  receives h', c_out c' (cell state only; it may be cp itself)
        keep   (a constant in each caller): also write u = [gate values (G*H) | store
               (S*H)], the record's layout (acts and store above)
    backward(dh, dc, acts, store, hp, cp, d, dcp, H)
        dh, dc the gradients reaching h' and c'; acts, store: the forward's record row
        d      receives [d gh (G*H) | dh_direct (H; only with Units.direct) | d(x W_i +
               b_i) of the gates past FOLD ((G-FOLD)*H)]; with FOLD == G and no direct
               path, d gh is d gx and ``d`` is that row itself (G*H long)
        dcp    receives dc_prev (cell state only; it may be dc itself)
"""
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np


@dataclass(frozen=True, eq=False)
class Units:
    """A family's scalar forms for the compiled loops (the module docstring has the
    contract). ``functions``: the module's own scalar helpers the two call (compiled
    first, in this order, and bound under their names); ``bind``: names the helpers use
    for an activation, mapped to the compiled module's (e.g. {"act": "tanh"});
    ``shapes``: the compiled loop shapes the family takes (see sequence/kernels.py);
    ``direct``: whether h reaches h' other than through W_hh (False: dh_direct is zero)."""
    forward: Callable
    backward: Callable
    functions: tuple = ()
    bind: dict = field(default_factory=dict)
    shapes: frozenset = frozenset({"sequence", "step", "cell", "rows"})
    direct: bool = True             # back's dh_direct can be non-zero (GRU: h' = ... + z h)


@dataclass(frozen=True, eq=False)
class Family:
    """Everything rnnlab knows about one cell family."""
    kind: str                       # registry key and command-line name: "gru"
    mode: str                       # torch's mode string: "GRU", "RNN_TANH", ...
    num_gates: int                  # G: row blocks of H in W_ih / W_hh
    gate_names: tuple               # letters of the row blocks ("r", "z", "n"); () RNN
    fold: int                       # leading gates whose b_hh folds into the projection
    store_names: tuple              # the (N, H) blocks a step keeps in ``store``
    step: Callable
    back: Callable
    plain_step: Callable
    plain_back: Callable
    equations: tuple                # one line each, the code's letters
    has_cell_state: bool = False    # the state is (h, c); c' is the store block "c"
    torch_class: Optional[str] = None   # torch.nn class computing the same (None: none)
    layer_class: Optional[str] = None   # rnnlab class building it when torch has none
    #: families whose step needs the weights themselves: with_weights(w, reverse) ->
    #: (step, back, extra) for one direction's LayerWeights (torch's layout; reverse: the
    #: direction runs over reversed time); step / back follow the contract above, and
    #: extra() gives a dict of gradients the driver's products cannot ("w_hh", "b_hh":
    #: the (G-FOLD)*H rows to add; "w_p": the peepholes); NumPy paths only
    with_weights: Optional[Callable] = None
    options: dict = field(default_factory=dict)   # constructor keywords of that class
    supports_projection: bool = False    # proj_size (LSTM only in torch)
    #: framework -> the torch gate block at each position of that framework's layout
    gate_order: dict = field(default_factory=dict)
    fused_step: bool = False        # step accepts gh=None (all of it already in gx)
    listed: bool = True             # offered as a CLI kind (RNN's relu goes through --nonlinearity)
    units: Optional[Units] = None   # scalar forms: the family has compiled float32 loops
    gate_activations: tuple = ()    # per gate: "sigmoid", "tanh", ... (explain's axes)
    activation: str = "tanh"        # what makes h from the gates (explain's wording)
    #: ONNX: {"op": its op type, "attributes": the values that say this family (per
    #: direction for "activations"), "defaults": ONNX's values for attributes a node leaves
    #: out} (None: no ONNX op computes it)
    onnx: Optional[dict] = None
    #: Keras: {"class": its layer, "options": the config values that say this family,
    #: "bias": "sum" (one bias b_ih + b_hh) or "pair" ([b_ih; b_hh])} (None: no Keras layer)
    keras: Optional[dict] = None
    #: the options of a variant family (cells/variants.py: Options), else None
    variant: Optional[object] = None

    @property
    def peepholes(self):
        """Whether the family has LSTM peephole weights (weight_p, a variant option)."""
        return self.variant is not None and self.variant.peepholes

    def options_text(self):
        """The options as constructor keywords, for messages: "cell_clip=1.0, ..."."""
        return ", ".join(f"{k}={v!r}" for k, v in self.options.items())

    @property
    def store(self):
        """S: the number of (N, H) blocks in ``store``."""
        return len(self.store_names)

    @property
    def c_block(self):
        """Which store block holds c' (families with a cell state), else -1."""
        return self.store_names.index("c") if self.has_cell_state else -1


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
