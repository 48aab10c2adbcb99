"""LSTM cell: forward step and backward step side by side.

    i = s(W_ii x + b_ii + W_hi h + b_hi)
    f = s(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o = s(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')              (with proj_size the driver then applies h' W_hr^T)

Gate row blocks: (i | f | g | o). See rnn.py for the cell contract.
"""
import numpy as np

from ._activations import sigmoid, sigmoid_grad, tanh_grad

GATES = 4
FOLD = 4          # all of b_hh is added to the input projection once
STORE = 2         # c' and tanh(c')


def step(gx, gh, h, c, h_new, store):
    H = c.shape[1]
    act = gx
    act += gh                                               # (N, 4H) pre-activations, in gx
    sigmoid(act[:, :2 * H], out=act[:, :2 * H])             # i, f
    np.tanh(act[:, 2 * H:3 * H], out=act[:, 2 * H:3 * H])   # g
    sigmoid(act[:, 3 * H:], out=act[:, 3 * H:])             # o
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    c_new, tc = store[:, :H], store[:, H:]
    np.multiply(f, c, out=c_new)
    c_new += np.multiply(i, g, out=h_new)                   # c' = f c + i g (h_new as scratch)
    np.tanh(c_new, out=tc)
    np.multiply(o, tc, out=h_new)                           # h' = o tanh(c')
    return c_new, (act, c, tc)


def back(dh_new, dc_new, cache, da, dgr):
    act, c, tc = cache
    H = c.shape[1]
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    dc = dh_new * o
    dc *= tanh_grad(tc)                                     # through h' = o tanh(c')
    if dc_new is not None:
        dc += dc_new
    np.multiply(dc, g, out=da[:, :H])                       # di = dc g
    np.multiply(dc, c, out=da[:, H:2 * H])                  # df = dc c
    da[:, :2 * H] *= sigmoid_grad(act[:, :2 * H])           # through i, f = s(...)
    np.multiply(dc, i, out=da[:, 2 * H:3 * H])
    da[:, 2 * H:3 * H] *= tanh_grad(g)                      # dg = dc i
    np.multiply(dh_new, tc, out=da[:, 3 * H:])
    da[:, 3 * H:] *= sigmoid_grad(o)                        # do = dh' tanh(c')
    dc_prev = dc * f                                        # c' = f c + ...
    return None, dc_prev
