"""The equations written out once more, as plainly as possible, for teaching and checking.

One sequence at a time, one step at a time, layer after layer: this is the loop that
``rnnlab explain`` prints and compares against the layer. It shares no code with the
sequence driver (functional.py), so agreement between the two is evidence, not tautology.
"""
import numpy as np


def _sig(a):
    return 1.0 / (1.0 + np.exp(-a))


def cell_step(kind, x, h, c, p, nonlinearity="tanh"):
    """One step for one sequence. x (I,), h (H_out,), c (H,) or None; p: dict with w_ih,
    w_hh, b_ih, b_hh (zeros without bias) and w_hr (None without projection).
    Returns (h_new, c_new, gates) where gates maps gate letters to values."""
    a_x = p["w_ih"] @ x + p["b_ih"]
    a_h = p["w_hh"] @ h + p["b_hh"]
    if kind == "rnn":
        a = a_x + a_h
        h_new = np.tanh(a) if nonlinearity == "tanh" else np.maximum(a, 0.0)
        return h_new, None, {}
    H = p["w_hh"].shape[0] // (3 if kind == "gru" else 4)
    if kind == "gru":
        r = _sig(a_x[:H] + a_h[:H])
        z = _sig(a_x[H:2 * H] + a_h[H:2 * H])
        n = np.tanh(a_x[2 * H:] + r * a_h[2 * H:])          # r multiplies W_hn h + b_hn
        return (1 - z) * n + z * h, None, {"r": r, "z": z, "n": n}
    a = a_x + a_h
    i, f, g, o = _sig(a[:H]), _sig(a[H:2 * H]), np.tanh(a[2 * H:3 * H]), _sig(a[3 * H:])
    c_new = f * c + i * g
    h_new = o * np.tanh(c_new)
    if p.get("w_hr") is not None:
        h_new = p["w_hr"] @ h_new
    return h_new, c_new, {"i": i, "f": f, "g": g, "o": o}


def layer_params(module, k, d):
    """Parameters of layer k, direction d of an rnnlab layer, as a dict for cell_step."""
    s = "_reverse" if d else ""
    sd = module.state_dict()
    G = module.weight_hh_l0.shape[0]
    return {"w_ih": sd[f"weight_ih_l{k}{s}"], "w_hh": sd[f"weight_hh_l{k}{s}"],
            "b_ih": sd.get(f"bias_ih_l{k}{s}", np.zeros(G)),
            "b_hh": sd.get(f"bias_hh_l{k}{s}", np.zeros(G)),
            "w_hr": sd.get(f"weight_hr_l{k}{s}")}


def run(kind, module, x, h0=None, c0=None, lengths=None):
    """Plain loops over sequences, layers, directions and steps (eval mode: no dropout).

    x (T, N, I) time-major. Returns dict with output (T, N, D*H_out), h_n, c_n and
    trace[k][d]: list over sequences of per-step records (t, h, c, gates).
    """
    T, N = x.shape[:2]
    L, D = module.num_layers, module.num_directions
    H, H_out = module.hidden_size, module.proj_size or module.hidden_size
    nl = getattr(module, "nonlinearity", "tanh")
    lengths = [T] * N if lengths is None else [int(v) for v in lengths]
    h0 = np.zeros((L * D, N, H_out)) if h0 is None else h0
    c0 = np.zeros((L * D, N, H)) if c0 is None else c0
    output = np.zeros((T, N, D * H_out))
    h_n, c_n = np.zeros((L * D, N, H_out)), np.zeros((L * D, N, H))
    trace = [[[None] * N for _ in range(D)] for _ in range(L)]
    for i in range(N):
        n = lengths[i]
        inp = x[:n, i]                                       # this sequence, its own length
        for k in range(L):
            outs = np.zeros((n, D * H_out))
            for d in range(D):
                p = layer_params(module, k, d)
                h, c = h0[k * D + d, i], c0[k * D + d, i]
                steps = range(n - 1, -1, -1) if d else range(n)   # reverse starts at its own end
                records = []
                for t in steps:
                    h, c_new, gates = cell_step(kind, inp[t], h, c, p, nl)
                    c = c_new if c_new is not None else c
                    outs[t, d * H_out:(d + 1) * H_out] = h
                    records.append((t, h, c_new, gates))
                h_n[k * D + d, i], c_n[k * D + d, i] = h, c
                trace[k][d][i] = records
            inp = outs                                       # layer k+1 takes layer k's output
        output[:n, i] = inp
    return {"output": output, "h_n": h_n, "c_n": c_n if kind == "lstm" else None,
            "trace": trace}
