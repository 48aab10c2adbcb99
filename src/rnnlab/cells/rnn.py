"""Elman RNN cell: forward step and backward step side by side.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh | relu

The contract of step/back, plain_step/plain_back and the scalar units is in
cells/family.py. The record's one gate value is h' itself.
"""
import numpy as np

from .activations import ONE, ZERO, relu, relu_grad, tanh_grad
from .family import Family, Units


# -- fast steps (the sequence driver) ---------------------------------------------------
def step_tanh(gx, gh, h, c, h_new, store):
    a = gx if gh is None else np.add(gx, gh, out=h_new)   # x W_ih^T + b_ih + h W_hh^T + b_hh
    np.tanh(a, out=h_new)                        # h' = tanh(a)
    return None, (h_new, store, h, c)


def back_tanh(dh_new, dc_new, cache, dgx, dgr):
    np.multiply(dh_new, tanh_grad(cache[0]), out=dgx)   # da = dh' * (1 - h'^2)
    return None, None


def step_relu(gx, gh, h, c, h_new, store):
    a = gx if gh is None else np.add(gx, gh, out=h_new)
    np.maximum(a, 0.0, out=h_new)                # h' = max(a, 0); NaN stays NaN
    return None, (h_new, store, h, c)


def back_relu(dh_new, dc_new, cache, dgx, dgr):
    np.copyto(dgx, dh_new)
    np.copyto(dgx, 0.0, where=cache[0] <= 0.0)   # da = dh' * [h' > 0] (NaN h' passes dh', as torch)
    return None, None


# -- plain steps (rnnlab.reference): one sequence, as on paper -------------------------
def _plain(act, act_grad):
    def plain_step(x, h, c, p):
        a = p["w_ih"] @ x + p["b_ih"] + p["w_hh"] @ h + p["b_hh"]
        return act(a), None, {}

    def plain_back(dh_new, dc_new, x, h, c, h_new, gates, p):
        da = dh_new * act_grad(h_new)            # through h' = act(a)
        dp = {"w_ih": np.outer(da, x), "w_hh": np.outer(da, h), "b_ih": da, "b_hh": da}
        return p["w_ih"].T @ da, p["w_hh"].T @ da, None, dp
    return plain_step, plain_back


# -- scalar units (the compiled loops; contract in cells/family.py) ----------------------
# ``act`` and ``tanh_act`` are bound per family (Units.bind): tanh or relu.
def unit_back(dh, h):
    """da from dh' through h' = act(a), by the output h'."""
    if tanh_act:  # noqa: F821
        return dh * (ONE - h * h)
    return ZERO if h <= ZERO else dh             # NaN h' passes dh', as torch


def forward_units(a, xa, hp, cp, u, h_out, c_out, lo, hi, H, keep):
    for j in range(lo, hi):
        h = act(a[j])  # noqa: F821
        if keep:
            u[j] = h                             # the gate value: h'
        h_out[j] = h


def back_units(dh, dc, acts, store, hp, cp, d, dcp, H):
    for j in range(H):
        d[j] = unit_back(dh[j], acts[j])         # d(x W_ih^T + b_ih + h W_hh^T + b_hh)


def _units(act):
    # the driver's own loop keeps NumPy's step: tanh is one call there, and a compiled
    # step measured no faster (lengths, (50, 16, 32, 32): 0.89 vs 0.99 ms per training call)
    return Units(forward_units, back_units, functions=(unit_back,), direct=False,
                 bind={"act": act, "tanh_act": act == "tanh"},
                 shapes=frozenset({"sequence", "cell", "rows"}))


# ONNX's RNN op (its defaults for attributes a node leaves out) and Keras's SimpleRNN (one
# bias: b_ih + b_hh)
_onnx = {"op": "RNN", "defaults": {"activations": ["Tanh"]}}
_keras = {"class": "SimpleRNN", "bias": "sum"}
_common = dict(num_gates=1, gate_names=(), fold=1, store_names=(), torch_class="RNN",
               fused_step=True, gate_order={"onnx": (0,), "keras": (0,)})
TANH = Family("rnn", "RNN_TANH", step=step_tanh, back=back_tanh,
              plain_step=_plain(np.tanh, tanh_grad)[0], plain_back=_plain(np.tanh, tanh_grad)[1],
              equations=("h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)",),
              options={"nonlinearity": "tanh"}, units=_units("tanh"),
              onnx=dict(_onnx, attributes={"activations": ["Tanh"]}),
              keras=dict(_keras, options={"activation": "tanh"}),
              **_common)
_relu = _plain(relu, relu_grad)
RELU = Family("rnn_relu", "RNN_RELU", step=step_relu, back=back_relu,
              plain_step=_relu[0], plain_back=_relu[1],
              equations=("h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh)",),
              options={"nonlinearity": "relu"}, listed=False, units=_units("relu"),
              activation="relu", onnx=dict(_onnx, attributes={"activations": ["Relu"]}),
              keras=dict(_keras, options={"activation": "relu"}),
              **_common)
