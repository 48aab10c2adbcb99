"""Elman RNN cell: forward step and backward step side by side.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh | relu

Cell contract shared by rnn.py, gru.py and lstm.py (the sequence driver in
functional.py does the looping, matmuls, layers, directions and lengths):

    step(gx, gh, h, c) -> (h_new, c_new, cache)
        gx = x W_ih^T + b_ih          (N, G*H)  input part of the gate pre-activations
        gh = h W_hh^T + b_hh          (N, G*H)  hidden part
        h, c                          (N, H)    previous state; c is None except for LSTM
    back(dh_new, dc_new, cache) -> (dgx, dgh, dh_direct, dc_prev)
        dgx, dgh                      (N, G*H)  gradients of gx and gh
        dh_direct                     (N, H) or None: the part of dh that does not flow
                                      through W_hh (GRU's z * h); the driver adds dgh @ W_hh
        dc_prev                       (N, H) or None
"""
import numpy as np

from ._activations import tanh_grad

GATES = 1


def step_tanh(gx, gh, h, c):
    h_new = np.add(gx, gh)
    np.tanh(h_new, out=h_new)                    # h' = tanh(a)
    return h_new, None, h_new


def back_tanh(dh_new, dc_new, cache):
    h_new = cache
    da = dh_new * tanh_grad(h_new)               # da = dh' * (1 - h'^2)
    return da, da, None, None


def step_relu(gx, gh, h, c):
    h_new = np.add(gx, gh)
    np.maximum(h_new, 0.0, out=h_new)            # h' = max(a, 0); NaN stays NaN
    return h_new, None, h_new


def back_relu(dh_new, dc_new, cache):
    h_new = cache
    da = np.where(h_new <= 0.0, 0.0, dh_new).astype(dh_new.dtype, copy=False)  # da = dh' * [h' > 0]
    return da, da, None, None
