"""The equations written out once more, as plainly as possible, for teaching and checking.

One sequence at a time, one step at a time, layer after layer, with 1-D vectors: the
forward loop that ``rnnlab explain`` prints, and the backpropagation-through-time loop
(``backprop``) in the style of min-char-rnn: walk the steps backwards carrying dh (and
dc), add each step's parameter gradients with +=. It shares no code with the sequence
driver (only each family's plain_step / plain_back, written separately from the fast
step), so agreement between the two is evidence, not tautology. Eval mode: no dropout.
"""
from typing import NamedTuple, Optional

import numpy as np

from .sequence.packed import check_lengths


class Step(NamedTuple):
    """One step of one sequence in one layer and direction."""
    t: int                      # time index
    x: np.ndarray               # the layer's input at t
    h_prev: np.ndarray          # state before the step
    c_prev: Optional[np.ndarray]
    m: np.ndarray               # the cell's new h before the projection (= h without one)
    h: np.ndarray               # the new h
    c: Optional[np.ndarray]     # the new c (LSTM)
    gates: dict                 # named gate values


def layer_params(module, k, d):
    """Layer k, direction d of an rnnlab layer as a dict of float64 arrays (zero biases
    when the layer has none; w_hr None without projection)."""
    w = module.weights()[k][d]
    zeros = np.zeros(w.w_hh.shape[0])
    f = (lambda a, z=None: z if a is None else np.asarray(a, dtype=np.float64))
    return {"w_ih": f(w.w_ih), "w_hh": f(w.w_hh), "b_ih": f(w.b_ih, zeros),
            "b_hh": f(w.b_hh, zeros), "w_hr": f(w.w_hr), "w_p": f(w.w_p),
            "reverse": bool(d) or getattr(module, "direction", "forward") == "reverse"}


def run(module, x, h0=None, c0=None, lengths=None):
    """Plain loops over sequences, layers, directions and steps.

    x (T, N, I) time-major. Returns a dict with output (T, N, D*H_out), h_n, c_n and
    trace[k][d][i]: the list of Steps of sequence i, in the order they ran.
    """
    fam = module.family
    x = np.asarray(x, dtype=np.float64)
    T, N = x.shape[:2]
    L, D = module.num_layers, module.num_directions
    H, H_out = module.hidden_size, module.proj_size or module.hidden_size
    lengths = [T] * N if lengths is None else check_lengths(lengths, T, N).tolist()
    h0 = np.zeros((L * D, N, H_out)) if h0 is None else np.asarray(h0, dtype=np.float64)
    c0 = np.zeros((L * D, N, H)) if c0 is None else np.asarray(c0, dtype=np.float64)
    output = np.zeros((T, N, D * H_out))
    h_n, c_n = np.zeros((L * D, N, H_out)), np.zeros((L * D, N, H))
    trace = [[[None] * N for _ in range(D)] for _ in range(L)]
    with np.errstate(all="ignore"):
        for i in range(N):
            n = lengths[i]
            inp = x[:n, i]                                       # this sequence, its own length
            for k in range(L):
                outs = np.zeros((n, D * H_out))
                for d in range(D):
                    p = layer_params(module, k, d)
                    h, c = h0[k * D + d, i], c0[k * D + d, i] if fam.has_cell_state else None
                    steps = []
                    for t in (range(n - 1, -1, -1) if p["reverse"] else range(n)):  # own end
                        m, c_new, gates = fam.plain_step(inp[t], h, c, p)
                        h_new = m if p["w_hr"] is None else p["w_hr"] @ m  # projection
                        steps.append(Step(t, inp[t], h, c, m, h_new, c_new, gates))
                        h, c = h_new, c_new
                        outs[t, d * H_out:(d + 1) * H_out] = h
                    h_n[k * D + d, i] = h
                    if c is not None:
                        c_n[k * D + d, i] = c
                    trace[k][d][i] = steps
                inp = outs                                       # layer k+1 reads layer k's output
            output[:n, i] = inp
    return {"output": output, "h_n": h_n, "c_n": c_n if fam.has_cell_state else None,
            "trace": trace, "module": module, "lengths": lengths}


def backprop(ran, d_output=None, d_h_n=None, d_c_n=None):
    """Backpropagation through time for a ``run``, one sequence and one step at a time.

    d_output (T, N, D*H_out), d_h_n, d_c_n: upstream gradients (None: zeros). Returns a
    dict with dx (T, N, I), dh0, dc0 and grads (torch parameter name -> gradient).
    """
    module, trace = ran["module"], ran["trace"]
    fam = module.family
    T, N = ran["output"].shape[:2]
    L, D = module.num_layers, module.num_directions
    H, H_out = module.hidden_size, module.proj_size or module.hidden_size
    d_output = np.zeros((T, N, D * H_out)) if d_output is None else d_output
    d_h_n = np.zeros((L * D, N, H_out)) if d_h_n is None else d_h_n
    d_c_n = np.zeros((L * D, N, H)) if d_c_n is None else d_c_n
    dx = np.zeros((T, N, module.input_size))
    dh0, dc0 = np.zeros((L * D, N, H_out)), np.zeros((L * D, N, H))
    grads = {n: np.zeros(p.shape) for n, p in module.named_parameters()}
    names = module.names()
    with np.errstate(all="ignore"):
        for i in range(N):
            n = ran["lengths"][i]
            d_out = d_output[:n, i]                          # gradient on this layer's output
            for k in reversed(range(L)):                     # top layer first
                d_in = np.zeros((n, module.input_size if k == 0 else D * H_out))
                for d in range(D):
                    p, nm = layer_params(module, k, d), names[k][d]
                    dh = d_h_n[k * D + d, i].copy()          # gradient on the final state
                    dc = d_c_n[k * D + d, i].copy() if fam.has_cell_state else None
                    for s in reversed(trace[k][d][i]):       # last step first
                        dh = dh + d_out[s.t, d * H_out:(d + 1) * H_out]   # + from the output
                        if p["w_hr"] is not None:            # h = W_hr m
                            grads[nm.w_hr] += np.outer(dh, s.m)
                            dh = p["w_hr"].T @ dh
                        dx_t, dh, dc, dp = fam.plain_back(dh, dc, s.x, s.h_prev, s.c_prev,
                                                          s.m, s.gates, p)
                        for key in ("w_ih", "w_hh", "b_ih", "b_hh", "w_p"):
                            if getattr(nm, key) is not None:
                                grads[getattr(nm, key)] += dp[key]   # parameters: add up
                        d_in[s.t] += dx_t                    # to the layer below / input
                    dh0[k * D + d, i] = dh
                    if dc is not None:
                        dc0[k * D + d, i] = dc
                d_out = d_in
            dx[:n, i] = d_out
    return {"dx": dx, "dh0": dh0, "dc0": dc0 if fam.has_cell_state else None, "grads": grads}
