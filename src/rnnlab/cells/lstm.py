"""LSTM cell: forward step and backward step side by side.

    i = s(W_ii x + b_ii + W_hi h + b_hi)
    f = s(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o = s(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')              (with proj_size the driver then applies h' W_hr^T)

Gate row blocks: (i | f | g | o). The record: gate values i | f | g | o, and the store
blocks c' and tanh(c'). Contract: cells/family.py.
"""
import numpy as np

from ..tuning import SMALL_GATES
from .activations import ONE, sigmoid, sigmoid_grad, tanh, tanh_grad
from .family import Family, Units


# -- fast steps (the sequence driver) ---------------------------------------------------
def step(gx, gh, h, c, h_new, store):
    H = c.shape[1]
    act = gx
    if gh is not None:                                      # None: already in gx
        act += gh                                           # (N, 4H) pre-activations, in gx
    i, f, g, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
    c_new, tc = store[:, :H], store[:, H:]
    if c.size <= SMALL_GATES:           # few elements: fewer calls beat fewer passes
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
    return c_new, (act, store, h, c)


def back(dh_new, dc_new, cache, da, dgr):
    act, store, _, c = cache
    H = c.shape[1]
    tc = store[:, H:]
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


# -- scalar units (the compiled loops; contract in cells/family.py) ----------------------
def unit(ai, af, ag, ao, c):
    """One unit: i, f, g, o, c', tanh(c') and h' from the four pre-activations and c."""
    i, f, g, o = sigmoid(ai), sigmoid(af), tanh(ag), sigmoid(ao)
    c_new = f * c + i * g                                   # c' = f c + i g
    tc = tanh(c_new)
    return i, f, g, o, c_new, tc, o * tc                    # h' = o tanh(c')


def unit_back(dh, dc, i, f, g, o, tc, c):
    """d of the four pre-activations and dc_prev, from dh' and dc' (the gradient reaching
    c' from after the step)."""
    d = dh * o * (ONE - tc * tc) + dc                       # through h' = o tanh(c')
    return (d * g * (i * (ONE - i)),                        # di, through s
            d * c * (f * (ONE - f)),                        # df
            d * i * (ONE - g * g),                          # dg, through tanh
            dh * tc * (o * (ONE - o)),                      # do
            d * f)                                          # c' = f c + ...


def forward_units(a, xa, hp, cp, u, h_out, c_out, lo, hi, H, keep):
    for j in range(lo, hi):
        i, f, g, o, c, tc, h = unit(a[j], a[H + j], a[2 * H + j], a[3 * H + j], cp[j])
        if keep:
            u[j], u[H + j], u[2 * H + j], u[3 * H + j] = i, f, g, o  # gate values
            u[4 * H + j], u[5 * H + j] = c, tc                      # store: c', tanh(c')
        c_out[j] = c
        h_out[j] = h


def back_units(dh, dc, acts, store, hp, cp, d, dcp, H):
    for j in range(H):
        di, df, dg, do, dcp[j] = unit_back(dh[j], dc[j], acts[j], acts[H + j],
                                           acts[2 * H + j], acts[3 * H + j], store[H + j],
                                           cp[j])
        d[j], d[H + j], d[2 * H + j], d[3 * H + j] = di, df, dg, do  # d gh (= d gx)


FAMILY = Family(
    "lstm", "LSTM", num_gates=4, gate_names=("i", "f", "g", "o"), fold=4,
    store_names=("c", "tanh_c"), fused_step=True,
    step=step, back=back, plain_step=plain_step, plain_back=plain_back,
    equations=("i = s(x W_ii^T + b_ii + h W_hi^T + b_hi)     input gate",
               "f = s(x W_if^T + b_if + h W_hf^T + b_hf)     forget gate",
               "g = tanh(x W_ig^T + b_ig + h W_hg^T + b_hg)  cell candidate",
               "o = s(x W_io^T + b_io + h W_ho^T + b_ho)     output gate",
               "c' = f * c + i * g",
               "h' = o * tanh(c')"),
    gate_activations=("sigmoid", "sigmoid", "tanh", "sigmoid"),
    has_cell_state=True, torch_class="LSTM", supports_projection=True,
    units=Units(forward_units, back_units, functions=(unit, unit_back), direct=False),
    gate_order={"onnx": (0, 3, 1, 2), "keras": (0, 1, 2, 3)},    # i o f c / i f c o
    onnx={"op": "LSTM", "attributes": {"activations": ["Sigmoid", "Tanh", "Tanh"]},
          "defaults": {"activations": ["Sigmoid", "Tanh", "Tanh"]}},
    keras={"class": "LSTM", "options": {"activation": "tanh", "recurrent_activation": "sigmoid"},
           "bias": "sum"},
)
