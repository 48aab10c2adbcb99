"""Elman RNN cell: forward step and backward step side by side.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh | relu

The contract of step/back and plain_step/plain_back is in cells/__init__.py.
"""
import numpy as np

from . import Family
from .activations import tanh_grad


# -- fast steps (the sequence driver) ---------------------------------------------------
def step_tanh(gx, gh, h, c, h_new, store):
    a = gx if gh is None else np.add(gx, gh, out=h_new)   # x W_ih^T + b_ih + h W_hh^T + b_hh
    np.tanh(a, out=h_new)                        # h' = tanh(a)
    return None, h_new


def back_tanh(dh_new, dc_new, cache, dgx, dgr):
    h_new = cache
    np.multiply(dh_new, tanh_grad(h_new), out=dgx)   # da = dh' * (1 - h'^2)
    return None, None


def step_relu(gx, gh, h, c, h_new, store):
    a = gx if gh is None else np.add(gx, gh, out=h_new)
    np.maximum(a, 0.0, out=h_new)            # h' = max(a, 0); NaN stays NaN
    return None, h_new


def back_relu(dh_new, dc_new, cache, dgx, dgr):
    h_new = cache
    np.copyto(dgx, dh_new)
    np.copyto(dgx, 0.0, where=h_new <= 0.0)      # da = dh' * [h' > 0] (NaN h' passes dh', as torch)
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


_common = dict(num_gates=1, gate_names=(), fold=1, store=0, torch_class="RNN", fused_step=True,
               gate_order={"onnx": (0,), "keras": (0,)})
TANH = Family("rnn", "RNN_TANH", step=step_tanh, back=back_tanh,
              plain_step=_plain(np.tanh, tanh_grad)[0], plain_back=_plain(np.tanh, tanh_grad)[1],
              equations=("h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)",),
              options={}, **_common)
_relu = _plain(lambda a: np.maximum(a, 0.0), lambda h: (h > 0).astype(h.dtype))
RELU = Family("rnn_relu", "RNN_RELU", step=step_relu, back=back_relu,
              plain_step=_relu[0], plain_back=_relu[1],
              equations=("h' = relu(x W_ih^T + b_ih + h W_hh^T + b_hh)",),
              options={"nonlinearity": "relu"}, listed=False, **_common)
