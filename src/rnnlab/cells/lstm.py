"""LSTM cell: forward step and backward step side by side.

    i = s(W_ii x + b_ii + W_hi h + b_hi)
    f = s(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o = s(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')              (with proj_size the driver then applies h' W_hr^T)

Gate row blocks: (i | f | g | o). Contract: cells/__init__.py.
"""
import numpy as np

from . import Family
from .activations import sigmoid, sigmoid_grad, tanh_grad


# -- fast steps (the sequence driver) ---------------------------------------------------
SMALL = 1024    # N * H up to which one sigmoid over all four gates wins (same numbers)


def step(gx, gh, h, c, h_new, store):
    H = c.shape[1]
    act = gx
    if gh is not None:                                      # None: already in gx
        act += gh                                           # (N, 4H) pre-activations, in gx
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    c_new, tc = store[:, :H], store[:, H:]
    if c.size <= SMALL:                 # few elements: fewer calls beat fewer passes
        np.tanh(g, out=tc)                                  # g, aside
        sigmoid(act, out=act)                               # i, f, o (and g's slot)
        np.copyto(g, tc)
    else:
        sigmoid(act[:, :2 * H], out=act[:, :2 * H])         # i, f
        np.tanh(g, out=g)                                   # g
        sigmoid(o, out=o)                                   # o
    np.multiply(f, c, out=c_new)
    c_new += np.multiply(i, g, out=h_new)                   # c' = f c + i g (h_new as scratch)
    np.tanh(c_new, out=tc)
    np.multiply(o, tc, out=h_new)                           # h' = o tanh(c')
    return c_new, (act, c, tc)


def back(dh_new, dc_new, cache, da, dgr):
    act, c, tc = cache
    H = c.shape[1]
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    if dh_new is None:                                      # only c' is in the loss
        dc = np.array(dc_new, copy=True)
    else:
        dc = dh_new * o
        dc *= tanh_grad(tc)                                 # through h' = o tanh(c')
        if dc_new is not None:
            dc += dc_new
    np.multiply(dc, g, out=da[:, :H])                       # di = dc g
    np.multiply(dc, c, out=da[:, H:2 * H])                  # df = dc c
    da[:, :2 * H] *= sigmoid_grad(act[:, :2 * H])           # through i, f = s(...)
    np.multiply(dc, i, out=da[:, 2 * H:3 * H])
    da[:, 2 * H:3 * H] *= tanh_grad(g)                      # dg = dc i
    if dh_new is None:
        da[:, 3 * H:] = 0                                   # o only reaches h'
    else:
        np.multiply(dh_new, tc, out=da[:, 3 * H:])
        da[:, 3 * H:] *= sigmoid_grad(o)                    # do = dh' tanh(c')
    dc_prev = dc * f                                        # c' = f c + ...
    return None, dc_prev


# -- plain steps (rnnlab.reference): one sequence, as on paper -------------------------
def _s(a):
    return 1.0 / (1.0 + np.exp(-a))


def plain_step(x, h, c, p):
    H = c.shape[0]
    a = p["w_ih"] @ x + p["b_ih"] + p["w_hh"] @ h + p["b_hh"]      # (4H,) i | f | g | o
    i, f, g, o = _s(a[:H]), _s(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), _s(a[3 * H:])
    c_new = f * c + i * g
    tc = np.tanh(c_new)
    return o * tc, c_new, {"i": i, "f": f, "g": g, "o": o, "tc": tc}


def plain_back(dh_new, dc_new, x, h, c, h_new, gt, p):
    i, f, g, o, tc = gt["i"], gt["f"], gt["g"], gt["o"], gt["tc"]
    dc = dh_new * o * (1 - tc * tc)                         # h' = o tanh(c')
    if dc_new is not None:
        dc = dc + dc_new                                    # c' also leaves the step
    do = dh_new * tc
    di, df, dg = dc * g, dc * c, dc * i                     # c' = f c + i g
    da = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g * g),
                         do * o * (1 - o)])                 # through s / tanh
    dp = {"w_ih": np.outer(da, x), "w_hh": np.outer(da, h), "b_ih": da, "b_hh": da}
    return p["w_ih"].T @ da, p["w_hh"].T @ da, dc * f, dp


FAMILY = Family(
    "lstm", "LSTM", num_gates=4, gate_names=("i", "f", "g", "o"), fold=4, store=2, fused_step=True,
    step=step, back=back, plain_step=plain_step, plain_back=plain_back,
    equations=("i = s(x W_ii^T + b_ii + h W_hi^T + b_hi)     input gate",
               "f = s(x W_if^T + b_if + h W_hf^T + b_hf)     forget gate",
               "g = tanh(x W_ig^T + b_ig + h W_hg^T + b_hg)  cell candidate",
               "o = s(x W_io^T + b_io + h W_ho^T + b_ho)     output gate",
               "c' = f * c + i * g",
               "h' = o * tanh(c')"),
    has_cell_state=True, torch_class="LSTM", supports_projection=True,
    gate_order={"onnx": (0, 3, 1, 2), "keras": (0, 1, 2, 3)},    # i o f c / i f c o
)
