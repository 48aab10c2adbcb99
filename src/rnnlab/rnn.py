"""Elman RNN cell: forward step and backward step side by side.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh | relu

Cell contract shared by rnn.py, gru.py and lstm.py (the sequence driver in
functional.py does the looping, matmuls, layers, directions and lengths):

    step(gx, gh, h, c, h_new) -> (c_new, cache)
        gx = x W_ih^T + b_ih          (N, G*H)  input part of the gate pre-activations
        gh = h W_hh^T + b_hh          (N, G*H)  hidden part; a fresh array the step may
                                                overwrite. The driver may fold the first
                                                FOLD*H entries of b_hh into gx instead.
        h, c                          (N, H)    previous state; c is None except for LSTM
        h_new                         (N, H)    buffer the new hidden state is written into
    back(dh_new, dc_new, cache, dgx) -> (dgh, dh_direct, dc_prev)
        dgx                           (N, G*H)  buffer for the gradient of gx (written)
        dgh                           (N, G*H)  gradient of gh; the same array as dgx when
                                                they are equal (RNN, LSTM)
        dh_direct                     (N, H) or None: the part of dh that does not flow
                                      through W_hh (GRU's z * h); the driver adds dgh @ W_hh
        dc_prev                       (N, H) or None
"""
import numpy as np

from ._activations import tanh_grad

GATES = 1
FOLD = 1          # all of b_hh may be added to the input projection once


def step_tanh(gx, gh, h, c, h_new):
    np.add(gh, gx, out=h_new)                    # a = x W_ih^T + b_ih + h W_hh^T + b_hh
    np.tanh(h_new, out=h_new)                    # h' = tanh(a)
    return None, h_new


def back_tanh(dh_new, dc_new, cache, dgx):
    h_new = cache
    np.multiply(dh_new, tanh_grad(h_new), out=dgx)   # da = dh' * (1 - h'^2)
    return dgx, None, None


def step_relu(gx, gh, h, c, h_new):
    np.add(gh, gx, out=h_new)
    np.maximum(h_new, 0.0, out=h_new)            # h' = max(a, 0); NaN stays NaN
    return None, h_new


def back_relu(dh_new, dc_new, cache, dgx):
    h_new = cache
    np.copyto(dgx, dh_new)
    np.copyto(dgx, 0.0, where=h_new <= 0.0)      # da = dh' * [h' > 0] (NaN h' passes dh', as torch)
    return dgx, None, None
