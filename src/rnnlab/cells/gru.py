"""GRU cell (torch's variant): forward step and backward step side by side.

    r = s(W_ir x + b_ir + W_hr h + b_hr)
    z = s(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))      # r multiplies the hidden part
    h' = (1 - z) * n + z * h

Gate row blocks of W_ih, W_hh, b_ih, b_hh: (r | z | n). This is ONNX's GRU with
linear_before_reset=1 and Keras's GRU with reset_after=True; the other variant (r applied
to h before the matmul) computes something else. The record: gate values r | z | n, and
the store block hn = W_hn h + b_hn. Contract: cells/family.py.
"""
import numpy as np

from ..tuning import SMALL_GATES
from .activations import ONE, sigmoid, sigmoid_grad, tanh, tanh_grad
from .family import Family, Units


# -- fast steps (the sequence driver) ---------------------------------------------------
def step(gx, gh, h, c, h_new, store):
    H = h.shape[1]
    r, z, n, hn, gh_n = gx[:, :H], gx[:, H:2 * H], gx[:, 2 * H:], store, gh[:, 2 * H:]
    if h.size <= SMALL_GATES:           # few elements: whole contiguous rows beat slices
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
    return None, (gx, store, h, c)


def back(dh_new, dc_new, cache, dgx, dgr):
    act, hn, h, _ = cache
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


# -- scalar units (the compiled loops; contract in cells/family.py) ----------------------
def unit(ar, az, xn, hn, h):
    """One unit: r, z, n and h' from the pre-activations of r and z, x W_in + b_in,
    hn = W_hn h + b_hn and the previous h."""
    r, z = sigmoid(ar), sigmoid(az)
    n = tanh(xn + r * hn)
    return r, z, n, n + z * (h - n)                         # h' = (1 - z) n + z h


def unit_back(dh, r, z, n, hn, h):
    """d(r, z pre-activations), d hn, the direct dh, and d(x W_in + b_in)."""
    dan = dh * (ONE - z) * (ONE - n * n)                    # dn, through tanh
    dar = dan * hn * (r * (ONE - r))                        # dr = dan hn, through s
    daz = (h - n) * dh * (z * (ONE - z))                    # dz = dh' (h - n), through s
    return dar, daz, dan * r, dh * z, dan


def forward_units(a, xa, hp, cp, u, h_out, c_out, lo, hi, H, keep):
    for j in range(lo, hi):
        hn = a[2 * H + j]
        r, z, n, h = unit(a[j], a[H + j], xa[2 * H + j], hn, hp[j])
        if keep:
            u[j], u[H + j], u[2 * H + j] = r, z, n          # gate values
            u[3 * H + j] = hn                               # store: hn
        h_out[j] = h


def back_units(dh, dc, acts, store, hp, cp, d, dcp, H):
    for j in range(H):
        dar, daz, dhn, direct, dxn = unit_back(dh[j], acts[j], acts[H + j], acts[2 * H + j],
                                               store[j], hp[j])
        d[j], d[H + j], d[2 * H + j] = dar, daz, dhn        # d gh
        d[3 * H + j] = direct
        d[4 * H + j] = dxn                                  # d(x W_in + b_in)


def converters(reset_after):
    """The ONNX and Keras records of a GRU family (this one, and the reset-before variant
    of gru_reset_before.py): same op and gate order, told apart by one attribute. With
    the reset gate before the product every bias lies outside r, so Keras keeps one."""
    return dict(
        gate_order={"onnx": (1, 0, 2), "keras": (1, 0, 2)},    # both z | r | h
        onnx={"op": "GRU", "attributes": {"linear_before_reset": int(reset_after),
                                          "activations": ["Sigmoid", "Tanh"]},
              "defaults": {"linear_before_reset": 0, "activations": ["Sigmoid", "Tanh"]}},
        keras={"class": "GRU", "options": {"reset_after": reset_after, "activation": "tanh",
                                           "recurrent_activation": "sigmoid"},
               "bias": "pair" if reset_after else "sum"})


FAMILY = Family(
    "gru", "GRU", num_gates=3, gate_names=("r", "z", "n"), fold=2, store_names=("hn",),
    step=step, back=back, plain_step=plain_step, plain_back=plain_back,
    equations=("r = s(x W_ir^T + b_ir + h W_hr^T + b_hr)           reset gate",
               "z = s(x W_iz^T + b_iz + h W_hz^T + b_hz)           update gate",
               "n = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))  r multiplies the hidden "
               "part,",
               "                                                    unlike the GRU paper",
               "h' = (1 - z) * n + z * h"),
    gate_activations=("sigmoid", "sigmoid", "tanh"),
    torch_class="GRU", units=Units(forward_units, back_units, functions=(unit, unit_back)),
    **converters(reset_after=True),
)
