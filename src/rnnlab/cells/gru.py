"""GRU cell (torch's variant): forward step and backward step side by side.

    r = s(W_ir x + b_ir + W_hr h + b_hr)
    z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      # r multiplies the hidden part
    h' = (1 - z) * n + z * h

Gate row blocks of W_ih, W_hh, b_ih, b_hh: (r | z | n). This is ONNX's GRU with
linear_before_reset=1 and Keras's GRU with reset_after=True; the other variant (r applied
to h before the matmul) computes something else. Contract: cells/__init__.py.
"""
import numpy as np

from . import Family
from .activations import sigmoid, sigmoid_grad, tanh_grad


# -- fast steps (the sequence driver) ---------------------------------------------------
SMALL = 1024    # N * H up to which one sigmoid over whole rows wins (same numbers)


def step(gx, gh, h, c, h_new, store):
    H = h.shape[1]
    r, z, n, hn, gh_n = gx[:, :H], gx[:, H:2 * H], gx[:, 2 * H:], store, gh[:, 2 * H:]
    if h.size <= SMALL:                 # few elements: whole contiguous rows beat slices
        np.copyto(hn, n)                                    # x_n aside (hn as scratch)
        gx += gh
        sigmoid(gx, out=gx)                                 # r, z (and n's slot)
        np.multiply(r, gh_n, out=n)
        n += hn                                             # x_n + r * hn
    else:
        rz = gx[:, :2 * H]
        rz += gh[:, :2 * H]
        sigmoid(rz, out=rz)                                 # r, z  (N, 2H), in gx
        n += np.multiply(r, gh_n, out=h_new)                # h_new as scratch
    np.copyto(hn, gh_n)                                     # W_hn h + b_hn, kept for backward
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


# -- plain steps (rnnlab.reference): one sequence, as on paper -------------------------
def _s(a):
    return 1.0 / (1.0 + np.exp(-a))


def plain_step(x, h, c, p):
    H = h.shape[0]
    ax = p["w_ih"] @ x + p["b_ih"]                          # (3H,) input parts r | z | n
    ah = p["w_hh"] @ h + p["b_hh"]                          # (3H,) hidden parts
    r = _s(ax[:H] + ah[:H])
    z = _s(ax[H:2 * H] + ah[H:2 * H])
    hn = ah[2 * H:]                                         # W_hn h + b_hn
    n = np.tanh(ax[2 * H:] + r * hn)
    return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n, "hn": hn}


def plain_back(dh_new, dc_new, x, h, c, h_new, g, p):
    r, z, n, hn = g["r"], g["z"], g["n"], g["hn"]
    dn = dh_new * (1 - z)                                   # h' = (1 - z) n + z h
    dz = dh_new * (h - n)
    dh = dh_new * z
    dan = dn * (1 - n * n)                                  # n = tanh(a_n)
    dr = dan * hn                                           # a_n = ... + r * hn
    dhn = dan * r
    dar, daz = dr * r * (1 - r), dz * z * (1 - z)           # r, z = s(...)
    dax = np.concatenate([dar, daz, dan])                   # gradient of W_ih x + b_ih
    dah = np.concatenate([dar, daz, dhn])                   # gradient of W_hh h + b_hh
    dp = {"w_ih": np.outer(dax, x), "w_hh": np.outer(dah, h), "b_ih": dax, "b_hh": dah}
    return p["w_ih"].T @ dax, dh + p["w_hh"].T @ dah, None, dp


FAMILY = Family(
    "gru", "GRU", num_gates=3, gate_names=("r", "z", "n"), fold=2, store=1,
    step=step, back=back, plain_step=plain_step, plain_back=plain_back,
    equations=("r = s(x W_ir^T + b_ir + h W_hr^T + b_hr)           reset gate",
               "z = s(x W_iz^T + b_iz + h W_hz^T + b_hz)           update gate",
               "n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))  r multiplies the hidden "
               "part,",
               "                                                    unlike the GRU paper",
               "h' = (1 - z) * n + z * h"),
    torch_class="GRU",
    gate_order={"onnx": (1, 0, 2), "keras": (1, 0, 2)},    # both z | r | h
)
