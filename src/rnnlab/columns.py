"""The column-vector layout many courses teach, mapped onto rnnlab (torch layout),
and the per-step gradient norms of backpropagation through time.

Column layout: x_t is (n_x, m), a_t (n_a, m), Wax (n_a, n_x), Waa (n_a, n_a),
ba (n_a, 1), a_t = tanh(Wax x_t + Waa a_(t-1) + ba); a sequence is x (n_x, m, T_x).
torch layout: x_t is (m, n_x) = x_t^T, weight_ih = Wax, weight_hh = Waa, and two biases
whose sum is ba (here bias_ih = ba, bias_hh = 0).
"""
import numpy as np

from .checks import to_numpy
from .errors import BackwardError, ShapeError
from .nn.records import call_gradients


def from_columns(Wax, Waa, ba, layer=False):
    """Column-layout weights -> a state_dict for RNNCell (layer=True: for RNN, suffix _l0)."""
    Wax, Waa, ba = (to_numpy(a, n) for a, n in ((Wax, "Wax"), (Waa, "Waa"), (ba, "ba")))
    n_a = Waa.shape[0] if Waa.ndim == 2 else -1
    if Wax.ndim != 2 or Waa.shape != (n_a, n_a) or Wax.shape[0] != n_a or \
            ba.reshape(-1).shape != (n_a,):
        raise ShapeError(f"expected Wax (n_a, n_x), Waa (n_a, n_a), ba (n_a, 1) with one n_a; "
                         f"got {Wax.shape}, {Waa.shape}, {ba.shape}")
    sd = {"weight_ih": Wax, "weight_hh": Waa, "bias_ih": ba.reshape(-1),
          "bias_hh": np.zeros(n_a, dtype=ba.dtype)}
    return {k + "_l0": v for k, v in sd.items()} if layer else sd


def grads_to_columns(grads):
    """An RNNCell's or RNN's grads -> {"dWax", "dWaa", "dba"} in column layout. With
    bias_ih = ba and bias_hh = 0, d ba = d bias_ih (= d bias_hh: both are sum of da)."""
    if not hasattr(grads, "keys"):
        raise TypeError(f"grads must be a module's grads dict, got {type(grads).__name__}")
    sfx = "_l0" if "weight_ih_l0" in grads else ""
    need = [k + sfx for k in ("weight_ih", "weight_hh", "bias_ih")]
    if any(k not in grads for k in need):
        raise ValueError(f"grads must hold {need} (an RNN or RNNCell with bias, after "
                         f"backward), got keys {sorted(grads)}")
    return {"dWax": grads["weight_ih" + sfx], "dWaa": grads["weight_hh" + sfx],
            "dba": grads["bias_ih" + sfx][:, None]}


def sequence_from_columns(x):
    """(n_x, m, T_x) -> (T_x, m, n_x), the layer's time-major input."""
    return np.ascontiguousarray(_three_d(x, "x").transpose(2, 1, 0))


def sequence_to_columns(a):
    """(T_x, m, n_a) -> (n_a, m, T_x)."""
    return np.ascontiguousarray(_three_d(a, "a").transpose(2, 1, 0))


def _three_d(a, name):
    arr = to_numpy(a, name)
    if arr.ndim != 3:
        raise ShapeError(f"{name} must be 3-D, got shape {arr.shape}")
    return arr


def gradient_norms(layer, d_output=None, d_h_n=None, d_c_n=None):
    """|dloss/dh_t| for every step of the layer's most recent forward call, per layer and
    direction: a list over layers of a list over directions of (L, N) arrays. Does not
    touch the layer's grads. Vanishing or exploding gradients show as the norms shrinking
    or growing going back in time (products of W_hh^T diag(act') Jacobians)."""
    if layer.last_call is None:
        raise BackwardError("gradient_norms needs a recorded forward call of the layer first "
                            "(training mode, or inside rnnlab.enable_grad())")
    return call_gradients(layer, layer.last_call, d_output, d_h_n, d_c_n,
                          dh_norms=True)["dh_norms"]
