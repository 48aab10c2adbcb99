"""Elman RNN cell: forward step and backward step side by side.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act = tanh | relu

Cell contract shared by rnn.py, gru.py and lstm.py (the sequence driver in
functional.py does the looping, matmuls, layers, directions and lengths):

    GATES   G, gate blocks of H rows in W_ih / W_hh
    FOLD    the first FOLD gates take x W_i^T + b_i + h W_h^T + b_h as a plain sum, so the
            driver adds their b_hh to the input projection once; the gradients of gx and
            gh are equal there
    STORE   how many (N, H) blocks per step the step keeps for its backward

    step(gx, gh, h, c, h_new, store) -> (c_new, cache)
        gx = x W_ih^T + b_ih (+ b_hh of the first FOLD gates)   (N, G*H), this step's own
              buffer: the step may overwrite it and keep it (activations live there)
        gh = h W_hh^T (+ b_hh of the other gates)                (N, G*H), scratch: may be
              overwritten, must not be kept
        h, c       (N, H) previous state; c is None except for LSTM
        h_new      (N, H) buffer the new hidden state is written into (kept by the driver)
        store      (N, STORE*H) buffer this step may keep for its backward
    back(dh_new, dc_new, cache, dgx, dgr) -> (dh_direct, dc_prev)
        dgx        (N, G*H) buffer: written with the gradient of gx; for the first FOLD
                   gates it is also the gradient of gh
        dgr        (N, (G-FOLD)*H) buffer, None when FOLD == G: written with the gradient
                   of gh for the other gates
        dh_direct  (N, H) or None: the part of dh_prev that does not flow through W_hh
                   (GRU's z * dh'); the driver adds dgh @ W_hh
        dc_prev    (N, H) or None
"""
import numpy as np

from ._activations import tanh_grad

GATES = 1
FOLD = 1          # all of b_hh is added to the input projection once
STORE = 0


def step_tanh(gx, gh, h, c, h_new, store):
    np.add(gx, gh, out=h_new)                    # a = x W_ih^T + b_ih + h W_hh^T + b_hh
    np.tanh(h_new, out=h_new)                    # h' = tanh(a)
    return None, h_new


def back_tanh(dh_new, dc_new, cache, dgx, dgr):
    h_new = cache
    np.multiply(dh_new, tanh_grad(h_new), out=dgx)   # da = dh' * (1 - h'^2)
    return None, None


def step_relu(gx, gh, h, c, h_new, store):
    np.add(gx, gh, out=h_new)
    np.maximum(h_new, 0.0, out=h_new)            # h' = max(a, 0); NaN stays NaN
    return None, h_new


def back_relu(dh_new, dc_new, cache, dgx, dgr):
    h_new = cache
    np.copyto(dgx, dh_new)
    np.copyto(dgx, 0.0, where=h_new <= 0.0)      # da = dh' * [h' > 0] (NaN h' passes dh', as torch)
    return None, None
