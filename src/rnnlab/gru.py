"""GRU cell (torch's variant): forward step and backward step side by side.

    r = s(W_ir x + b_ir + W_hr h + b_hr)
    z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      # r multiplies the hidden part
    h' = (1 - z) * n + z * h

Gate row blocks of W_ih, W_hh, b_ih, b_hh: (r | z | n). See rnn.py for the cell contract.
"""
import numpy as np

from ._activations import sigmoid, sigmoid_grad, tanh_grad

GATES = 3
FOLD = 2          # b_hr, b_hz fold into the input projection; b_hn sits inside r * (...)
STORE = 1         # hn = W_hn h + b_hn


def step(gx, gh, h, c, h_new, store):
    H = h.shape[1]
    rz = gx[:, :2 * H]
    rz += gh[:, :2 * H]
    sigmoid(rz, out=rz)                                     # r, z  (N, 2H), in gx
    r, z = rz[:, :H], rz[:, H:]
    hn = store
    np.copyto(hn, gh[:, 2 * H:])                            # W_hn h + b_hn, kept for backward
    n = gx[:, 2 * H:]
    n += np.multiply(r, hn, out=h_new)                      # h_new as scratch
    np.tanh(n, out=n)                                       # n = tanh(x_n + r * hn), in gx
    np.subtract(h, n, out=h_new)
    h_new *= z
    h_new += n                                              # h' = n + z * (h - n)
    return None, (gx, hn, h)


def back(dh_new, dc_new, cache, dgx, dgr):
    act, hn, h = cache
    H = h.shape[1]
    r, z, n = act[:, :H], act[:, H:2 * H], act[:, 2 * H:]
    dar, daz, dan = dgx[:, :H], dgx[:, H:2 * H], dgx[:, 2 * H:]
    np.multiply(dh_new, 1.0 - z, out=dan)                   # dn = dh' (1 - z)
    dan *= tanh_grad(n)                                     # through n = tanh(...)
    np.multiply(dan, hn, out=dar)                           # dr = dan * hn
    np.subtract(h, n, out=daz)
    daz *= dh_new                                           # dz = dh' (h - n)
    dgx[:, :2 * H] *= sigmoid_grad(act[:, :2 * H])          # through r, z = s(...)
    np.multiply(dan, r, out=dgr)                            # d(W_hn h + b_hn) = dan * r
    dh_direct = dh_new * z                                  # through h' = ... + z * h
    return dh_direct, None
