"""GRU with the reset gate applied before the hidden product: the GRU of Cho et al.
(2014), ONNX's GRU default (linear_before_reset=0) and Keras's GRU(reset_after=False).
torch has no class for it. ``rnnlab.GRU(..., reset_after=False)`` builds it.

    r = s(W_ir x + b_ir + W_hr h + b_hr)
    z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)      # r multiplies h, before W_hn
    h' = (1 - z) * n + z * h

Same parameters, names, shapes and gate blocks (r | z | n) as torch's GRU. Its step needs
W_hn itself (the driver's h W_hh^T cannot give W_hn (r * h)), so the family binds the
weights (``with_weights``, cells/family.py); it has the NumPy path only (no compiled
units). The record: gate values r | z | n, and the store blocks: the three
pre-activations and rh = r * h (the layout of variant_steps.gru_steps).
"""
import numpy as np

from .family import Family
from .gru import converters
from .variant_steps import gru_steps
from .variants import check_options

_OPTIONS = check_options("gru", reset_after=False)      # sigmoid, tanh, no clip


def with_weights(w, reverse=False):
    """(step, back, extra) for one direction's weights (cells/family.py): the general GRU
    step of variant_steps.py with sigmoid / tanh, no clip and reset_after=False, the one
    home of this equation's fast forward and backward (it computes W_hn (r * h) + b_hn
    itself and keeps dW_hn, db_hn for the driver, whose own products give 0 there)."""
    return gru_steps(_OPTIONS, w, reverse)


def plain_step(x, h, c, p):
    H = h.shape[0]
    ax = p["w_ih"] @ x + p["b_ih"]
    ah = p["w_hh"][:2 * H] @ h + p["b_hh"][:2 * H]
    r = 1.0 / (1.0 + np.exp(-(ax[:H] + ah[:H])))
    z = 1.0 / (1.0 + np.exp(-(ax[H:2 * H] + ah[H:])))
    rh = r * h
    n = np.tanh(ax[2 * H:] + p["w_hh"][2 * H:] @ rh + p["b_hh"][2 * H:])
    return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n, "rh": rh}


def plain_back(dh_new, dc_new, x, h, c, h_new, g, p):
    H = h.shape[0]
    r, z, n, rh = g["r"], g["z"], g["n"], g["rh"]
    dan = dh_new * (1 - z) * (1 - n * n)
    dz = dh_new * (h - n)
    drh = p["w_hh"][2 * H:].T @ dan
    dar, daz = drh * h * r * (1 - r), dz * z * (1 - z)
    dax = np.concatenate([dar, daz, dan])
    w_hh_grad = np.concatenate([np.outer(dar, h), np.outer(daz, h), np.outer(dan, rh)])
    dh = dh_new * z + drh * r + p["w_hh"][:2 * H].T @ np.concatenate([dar, daz])
    dp = {"w_ih": np.outer(dax, x), "w_hh": w_hh_grad, "b_ih": dax, "b_hh": dax}
    return p["w_ih"].T @ dax, dh, None, dp


def _unused_step(*args):
    raise NotImplementedError("gru_reset_before steps need the weights: "
                              "with_weights(w, reverse)")


FAMILY = Family(
    "gru_reset_before", "GRU_RESET_BEFORE", num_gates=3, gate_names=("r", "z", "n"), fold=2,
    store_names=("a_r", "a_z", "a_n", "rh"), step=_unused_step, back=_unused_step,
    plain_step=plain_step,
    plain_back=plain_back, with_weights=with_weights,
    equations=("r = s(x W_ir^T + b_ir + h W_hr^T + b_hr)           reset gate",
               "z = s(x W_iz^T + b_iz + h W_hz^T + b_hz)           update gate",
               "n = tanh(x W_in^T + b_in + (r * h) W_hn^T + b_hn)  r multiplies h before "
               "W_hn,",
               "                                                    as in the GRU paper",
               "h' = (1 - z) * n + z * h"),
    gate_activations=("sigmoid", "sigmoid", "tanh"), layer_class="GRU",
    options={"reset_after": False}, listed=False,
    **converters(reset_after=False),
)
