"""A new cell family in one file: the minimal gated unit (MGU, Zhou et al. 2016), written
in torch's GRU style (the forget gate multiplies the hidden part of the candidate).

    f  = s(x W_if^T + b_if + h W_hf^T + b_hf)           forget gate
    n  = tanh(x W_in^T + b_in + f * (h W_hn^T + b_hn))  candidate
    h' = (1 - f) * h + f * n

Registering it (the one line at the bottom) gives it layers of any depth and direction,
variable lengths, dropout, cells, the reference loop, gradcheck and ``rnnlab explain``;
its scalar units (the last section) give it the compiled float32 loops of rnnlab[fast]:

    import examples.mgu_family            # or: from mgu_family import FAMILY
    layer = rnnlab.RNNBase("MGU", 3, 4, num_layers=2, bidirectional=True)

docs/families.md walks through it.
"""
import numpy as np

from rnnlab.cells import Family, Units, register
from rnnlab.cells.activations import ONE, sigmoid, sigmoid_grad, tanh, tanh_grad


# -- fast step and back: the contract of rnnlab/cells/family.py -------------------------
def step(gx, gh, h, c, h_new, store):
    H = h.shape[1]
    f = gx[:, :H]
    f += gh[:, :H]
    sigmoid(f, out=f)                                       # f, kept in gx
    hn = store
    np.copyto(hn, gh[:, H:])                                # W_hn h + b_hn, kept for backward
    n = gx[:, H:]
    n += np.multiply(f, hn, out=h_new)
    np.tanh(n, out=n)                                       # n, kept in gx
    np.subtract(n, h, out=h_new)
    h_new *= f
    h_new += h                                              # h' = h + f (n - h)
    return None, (gx, store, h, c)


def back(dh_new, dc_new, cache, dgx, dgr):
    act, hn, h, _ = cache
    H = h.shape[1]
    f, n = act[:, :H], act[:, H:]
    daf, dan = dgx[:, :H], dgx[:, H:]
    np.multiply(dh_new, f, out=dan)                         # dn = dh' f
    dan *= tanh_grad(n)
    np.subtract(n, h, out=daf)
    daf *= dh_new                                           # df from h' = h + f (n - h)
    daf += dan * hn                                         # df from n = tanh(... + f hn)
    daf *= sigmoid_grad(f)
    np.multiply(dan, f, out=dgr)                            # d(W_hn h + b_hn)
    return dh_new * (1.0 - f), None                         # through h' = (1 - f) h + ...


# -- plain step and back: one sequence, for rnnlab.reference -----------------------------
def plain_step(x, h, c, p):
    H = h.shape[0]
    ax, ah = p["w_ih"] @ x + p["b_ih"], p["w_hh"] @ h + p["b_hh"]
    f = 1 / (1 + np.exp(-(ax[:H] + ah[:H])))
    n = np.tanh(ax[H:] + f * ah[H:])
    return (1 - f) * h + f * n, None, {"f": f, "n": n, "hn": ah[H:]}


def plain_back(dh_new, dc_new, x, h, c, h_new, g, p):
    f, n, hn = g["f"], g["n"], g["hn"]
    dan = dh_new * f * (1 - n * n)
    daf = (dh_new * (n - h) + dan * hn) * f * (1 - f)
    dax = np.concatenate([daf, dan])
    dah = np.concatenate([daf, dan * f])
    dp = {"w_ih": np.outer(dax, x), "w_hh": np.outer(dah, h), "b_ih": dax, "b_hh": dah}
    return p["w_ih"].T @ dax, dh_new * (1 - f) + p["w_hh"].T @ dah, None, dp


# -- scalar units: one unit, written once; every compiled loop shape calls them ---------
def unit(af, xn, hn, h):
    f = sigmoid(af)
    n = tanh(xn + f * hn)
    return f, n, h + f * (n - h)                            # h' = (1 - f) h + f n


def unit_back(dh, f, n, hn, h):
    """d(f pre-activation), d hn, the direct dh and d(x W_in + b_in)."""
    dan = dh * f * (ONE - n * n)
    daf = (dh * (n - h) + dan * hn) * (f * (ONE - f))
    return daf, dan * f, dh * (ONE - f), dan


def forward_units(a, xa, hp, cp, u, h_out, c_out, lo, hi, H, keep):
    for j in range(lo, hi):
        f, n, h = unit(a[j], xa[H + j], a[H + j], hp[j])
        if keep:
            u[j], u[H + j], u[2 * H + j] = f, n, a[H + j]   # gate values, store: hn
        h_out[j] = h


def back_units(dh, dc, acts, store, hp, cp, d, dcp, H):
    for j in range(H):
        daf, dhn, direct, dxn = unit_back(dh[j], acts[j], acts[H + j], store[j], hp[j])
        d[j], d[H + j] = daf, dhn                           # d gh
        d[2 * H + j] = direct
        d[3 * H + j] = dxn                                  # d(x W_in + b_in)


FAMILY = Family(
    "mgu", "MGU", num_gates=2, gate_names=("f", "n"), fold=1, store_names=("hn",),
    step=step, back=back, plain_step=plain_step, plain_back=plain_back,
    units=Units(forward_units, back_units, functions=(unit, unit_back)),
    equations=("f = s(x W_if^T + b_if + h W_hf^T + b_hf)           forget gate",
               "n = tanh(x W_in^T + b_in + f * (h W_hn^T + b_hn))  candidate",
               "h' = (1 - f) * h + f * n"))

register(FAMILY)
