"""Oracles for the variant families, written here from the ONNX operator text and
independently of rnnlab's code: a JAX scan of ONNX's RNN / GRU / LSTM with every option
(activations, clip, peepholes, input_forget, linear_before_reset) for gradients, and
onnxruntime on one hand-built node per layer for the forward."""
import numpy as np
import pytest

@pytest.fixture(autouse=True)
def float64_jax():
    """JAX in float64 for the tests of a module that imports this (Keras's JAX backend, in
    other tests, needs JAX's float32 default)."""
    import jax
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


# the activation table of the ONNX operators, with onnxruntime's reading of the two
# value lists: each value goes to the next activation that takes one
TAKES = {"Relu": (0, 0), "Tanh": (0, 0), "Sigmoid": (0, 0), "Affine": (1, 1),
         "LeakyRelu": (1, 0), "ThresholdedRelu": (1, 0), "ScaledTanh": (1, 1),
         "HardSigmoid": (1, 1), "Elu": (1, 0), "Softsign": (0, 0), "Softplus": (0, 0)}
N_ACTS = {"rnn": 1, "gru": 2, "lstm": 3}


def jax_activation(jnp, jax, name, a, b):
    return {"Relu": lambda x: jnp.maximum(x, 0.0), "Tanh": jnp.tanh,
            "Sigmoid": jax.nn.sigmoid, "Affine": lambda x: a * x + b,
            "LeakyRelu": lambda x: jnp.where(x >= 0, x, a * x),
            "ThresholdedRelu": lambda x: jnp.where(x > a, x, 0.0),
            "ScaledTanh": lambda x: a * jnp.tanh(b * x),
            "HardSigmoid": lambda x: jnp.clip(a * x + b, 0.0, 1.0),
            "Elu": lambda x: jnp.where(x >= 0, x, a * (jnp.exp(jnp.minimum(x, 0.0)) - 1.0)),
            "Softsign": lambda x: x / (1.0 + jnp.abs(x)),
            "Softplus": lambda x: jnp.logaddexp(0.0, x)}[name]


def flat_lists(sets):
    """[(name, alpha, beta), ...] per direction -> ONNX's three attribute lists."""
    names, alphas, betas = [], [], []
    for s in sets:
        for name, a, b in s:
            names.append(name)
            if TAKES[name][0]:
                alphas.append(a)
            if TAKES[name][1]:
                betas.append(b)
    return names, alphas, betas


def jax_direction(jax, jnp, kind, p, x, h0, c0, lengths, acts, clip, peep, coupled, lbr):
    """One direction over (T, N, I) in torch's blocks (RNN one, GRU r|z|n, LSTM i|f|g|o);
    a row stops at its length (state kept, output 0 after)."""
    H = p["w_hh"].shape[1] if "w_hr" not in p else p["w_hr"].shape[1]
    fns = [jax_activation(jnp, jax, *spec) for spec in acts]
    cl = (lambda v: jnp.clip(v, -clip, clip)) if clip is not None else (lambda v: v)
    blk = lambda v, k: v[:, k * H:(k + 1) * H]       # noqa: E731

    def cell(state, inputs):
        h, c = state
        x_t, t = inputs
        ax = x_t @ p["w_ih"].T + p["b_ih"]
        if kind == "rnn":
            h_new = fns[0](cl(ax + h @ p["w_hh"].T + p["b_hh"]))
            c_new = c
        elif kind == "gru":
            f, g = fns
            ah = h @ p["w_hh"].T + p["b_hh"]
            r, z = f(cl(blk(ax, 0) + blk(ah, 0))), f(cl(blk(ax, 1) + blk(ah, 1)))
            w_hn, b_hn = p["w_hh"][2 * H:], p["b_hh"][2 * H:]
            inner = r * (h @ w_hn.T + b_hn) if lbr else (r * h) @ w_hn.T + b_hn
            n = g(cl(blk(ax, 2) + inner))
            h_new, c_new = (1 - z) * n + z * h, c
        else:
            f, g, hh = fns
            a = ax + h @ p["w_hh"].T + p["b_hh"]
            pi, po, pf = (p["w_p"][:H], p["w_p"][H:2 * H], p["w_p"][2 * H:]) if peep \
                else (0.0, 0.0, 0.0)
            i = f(cl(blk(a, 0) + pi * c))
            fg = 1 - i if coupled else f(cl(blk(a, 1) + pf * c))
            c_new = fg * c + i * g(cl(blk(a, 2)))
            o = f(cl(blk(a, 3) + po * c_new))
            h_new = o * hh(c_new)
        live = (t < lengths)[:, None]
        return ((jnp.where(live, h_new, h), jnp.where(live, c_new, c)),
                jnp.where(live, h_new, 0.0))
    (h_n, c_n), out = jax.lax.scan(cell, (h0, c0), (x, jnp.arange(x.shape[0])))
    return out, h_n, c_n


def reverse_rows(jnp, x, lengths):
    T = x.shape[0]
    t = jnp.arange(T)[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    return jnp.take_along_axis(x, idx[:, :, None], axis=0)


def jax_layers(jax, jnp, kind, params, x, h0, c0, lengths, sets, clip, peep, coupled, lbr):
    """Stacked, optionally bidirectional (len(params[0]) directions)."""
    L, D = len(params), len(params[0])
    inp, hs, cs = x, [], []
    for k in range(L):
        outs = []
        for d in range(D):
            acts = sets[d] if len(sets) > 1 else sets[0]
            xin = inp if d == 0 else reverse_rows(jnp, inp, lengths)
            out, hn, cn = jax_direction(jax, jnp, kind, params[k][d], xin, h0[k * D + d],
                                        c0[k * D + d], lengths, acts, clip, peep, coupled,
                                        lbr)
            outs.append(out if d == 0 else reverse_rows(jnp, out, lengths))
            hs.append(hn)
            cs.append(cn)
        inp = jnp.concatenate(outs, axis=2)
    return inp, jnp.stack(hs), jnp.stack(cs)


# torch's blocks at each position of ONNX's layout
ONNX_ORDER = {"rnn": (0,), "gru": (1, 0, 2), "lstm": (0, 3, 1, 2)}


def to_onnx(w, kind):
    G = len(ONNX_ORDER[kind])
    H = w.shape[0] // G
    return np.concatenate([w[j * H:(j + 1) * H] for j in ONNX_ORDER[kind]])


def ort_layers(kind, layer, x, lengths, h0, c0, attrs):
    """onnxruntime, one hand-built node per layer of ``layer`` (rnnlab's, float32), time
    major; returns output, h_n (and c_n)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    op = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}[kind]
    L, D, H = layer.num_layers, layer.num_directions, layer.hidden_size
    inp, hs, cs = x.astype(np.float32), [], []
    for k in range(L):
        sfx = [f"_l{k}" + ("_reverse" if d else "") for d in range(D)]
        get = lambda n, s: np.asarray(getattr(layer, n + s), np.float32)   # noqa: E731
        W = np.stack([to_onnx(get("weight_ih", s), kind) for s in sfx])
        R = np.stack([to_onnx(get("weight_hh", s), kind) for s in sfx])
        inits = [numpy_helper.from_array(W, "W"), numpy_helper.from_array(R, "R")]
        names = ["X", "W", "R", ""]
        if layer.bias:
            B = np.stack([np.concatenate([to_onnx(get("bias_ih", s), kind),
                                          to_onnx(get("bias_hh", s), kind)]) for s in sfx])
            inits.append(numpy_helper.from_array(B, "B"))
            names[3] = "B"
        names += ["L", "h0"]
        feeds = {"X": inp, "L": lengths.astype(np.int32),
                 "h0": h0[k * D:(k + 1) * D].astype(np.float32)}
        if kind == "lstm":
            names.append("c0")
            feeds["c0"] = c0[k * D:(k + 1) * D].astype(np.float32)
            if attrs.get("peepholes"):
                P = np.stack([get("weight_p", s) for s in sfx])
                inits.append(numpy_helper.from_array(P, "P"))
                names.append("P")
        a = {key: v for key, v in attrs.items() if key != "peepholes"}
        if a.get("activations") and D == 2 and len(a["activations"]) == N_ACTS[kind]:
            for key in ("activations", "activation_alpha", "activation_beta"):
                if key in a:
                    a[key] = a[key] * 2
        outs = ["Y", "Yh"] + (["Yc"] if kind == "lstm" else [])
        node = helper.make_node(op, names, outs, hidden_size=H,
                                direction="bidirectional" if D == 2 else "forward", **a)
        ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(inp.shape)),
               helper.make_tensor_value_info("L", TensorProto.INT32, [inp.shape[1]]),
               helper.make_tensor_value_info("h0", TensorProto.FLOAT, [D, inp.shape[1], H])]
        if kind == "lstm":
            ins.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT,
                                                     [D, inp.shape[1], H]))
        g = helper.make_graph([node], "g", ins,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                               for o in outs], inits)
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 14)])
        s = ort.InferenceSession(model.SerializeToString(),
                                 providers=["CPUExecutionProvider"])
        res = s.run(None, feeds)
        T, _, N, _ = res[0].shape
        inp = res[0].transpose(0, 2, 1, 3).reshape(T, N, D * H)
        hs.append(res[1])
        if kind == "lstm":
            cs.append(res[2])
    return inp, np.concatenate(hs), (np.concatenate(cs) if kind == "lstm" else None)
