"""The variant options torch lacks (activations with alpha/beta, cell_clip, LSTM
peepholes and input_forget, GRU reset_after with all of them), drawn together with
layers, bidirectional, lengths and bias: forward against onnxruntime on hand-built nodes
(float32) and every gradient against JAX autodiff of tests/variant_oracles.py (float64,
1e-10)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnlab
from variant_oracles import N_ACTS, TAKES, flat_lists, jax_layers, ort_layers

jax = pytest.importorskip("jax")
jnp = jax.numpy


@pytest.fixture(autouse=True)
def float64_jax():
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


_VALUES = {"Affine": (0.5, 1.2, -0.3, 0.3), "LeakyRelu": (0.01, 0.3, 0, 0),
           "ThresholdedRelu": (-0.5, 0.5, 0, 0), "ScaledTanh": (0.5, 1.5, 0.5, 1.5),
           "HardSigmoid": (0.1, 0.5, 0.3, 0.7), "Elu": (0.5, 1.5, 0, 0)}


@st.composite
def activation_set(draw, n):
    out = []
    for _ in range(n):
        name = draw(st.sampled_from(sorted(TAKES)))
        lo, hi, blo, bhi = _VALUES.get(name, (0, 0, 0, 0))
        a = draw(st.floats(lo, hi)) if TAKES[name][0] else 0.0
        b = draw(st.floats(blo, bhi)) if TAKES[name][1] else 0.0
        out.append((name, float(np.float32(a)), float(np.float32(b))))
    return out


@st.composite
def variants(draw):
    kind = draw(st.sampled_from(["rnn", "gru", "lstm"]))
    bi = draw(st.booleans())
    kw, attrs = {}, {}
    sets = None
    if draw(st.booleans()):
        sets = [draw(activation_set(N_ACTS[kind]))
                for _ in range(2 if bi and draw(st.booleans()) else 1)]
        names, alphas, betas = flat_lists(sets)
        kw["activations"] = attrs["activations"] = names
        if alphas:
            kw["activation_alpha"] = attrs["activation_alpha"] = alphas
        if betas:
            kw["activation_beta"] = attrs["activation_beta"] = betas
    if draw(st.booleans()):
        kw["cell_clip"] = attrs["clip"] = float(np.float32(draw(st.floats(0.3, 3.0))))
    if kind == "lstm":
        kw["peepholes"] = attrs["peepholes"] = draw(st.booleans())
        if draw(st.booleans()):
            kw["input_forget"] = True
            attrs["input_forget"] = 1
    if kind == "gru":
        kw["reset_after"] = draw(st.booleans())
        attrs["linear_before_reset"] = int(kw["reset_after"])
    default = {"rnn": [("Tanh", 0, 0)], "gru": [("Sigmoid", 0, 0), ("Tanh", 0, 0)],
               "lstm": [("Sigmoid", 0, 0), ("Tanh", 0, 0), ("Tanh", 0, 0)]}[kind]
    return dict(kind=kind, bi=bi, kw=kw, attrs=attrs, sets=sets or [default],
                L=draw(st.integers(1, 2)), lengths=draw(st.booleans()),
                bias=draw(st.booleans()), seed=draw(st.integers(0, 999)))


def _layer(v, dtype):
    cls = {"rnn": rnnlab.RNN, "gru": rnnlab.GRU, "lstm": rnnlab.LSTM}[v["kind"]]
    return cls(3, 4, num_layers=v["L"], bidirectional=v["bi"], bias=v["bias"],
               dtype=dtype, seed=v["seed"], **v["kw"])


def _data(v, rng, T=4, N=3):
    D = 2 if v["bi"] else 1
    x = rng.standard_normal((T, N, 3))
    h0 = rng.standard_normal((v["L"] * D, N, 4)) * 0.5
    c0 = rng.standard_normal((v["L"] * D, N, 4)) * 0.5
    lens = rng.integers(1, T + 1, N) if v["lengths"] else np.full(N, T)
    return x, h0, c0, lens


def _run(m, v, x, h0, c0, lens):
    hx = (h0, c0) if v["kind"] == "lstm" else h0
    out, state = m(x, hx, lengths=lens if v["lengths"] else None)
    h_n, c_n = state if v["kind"] == "lstm" else (state, None)
    return out, h_n, c_n


def check_forward_against_onnxruntime(v):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(v["seed"])
    m = _layer(v, np.float32)
    x, h0, c0, lens = (a.astype(np.float32) if a.dtype.kind == "f" else a
                       for a in _data(v, rng))
    got = _run(m, v, x, h0, c0, lens)
    want = ort_layers(v["kind"], m, x, lens, h0, c0, v["attrs"])
    for a, b in zip(got, want):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def check_gradients_against_jax(v):
    rng = np.random.default_rng(v["seed"])
    m = _layer(v, np.float64)
    x, h0, c0, lens = _data(v, rng)
    out, h_n, c_n = _run(m, v, x, h0, c0, lens)
    g_out, g_h = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    g_c = None if c_n is None else rng.standard_normal(c_n.shape)
    grads = m.backward(g_out, g_h, g_c) if c_n is not None else m.backward(g_out, g_h)
    kind, D = v["kind"], m.num_directions
    sfx = [[f"_l{k}" + ("_reverse" if d else "") for d in range(D)] for k in range(v["L"])]
    G = {"rnn": 1, "gru": 3, "lstm": 4}[kind]
    zeros = np.zeros(G * 4)
    names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih",
             "b_hh": "bias_hh", "w_p": "weight_p"}
    params = [[{k: (getattr(m, n + s) if hasattr(m, n + s) else zeros)
                for k, n in names.items() if k != "w_p" or v["kw"].get("peepholes")}
               for s in row] for row in sfx]
    kw = v["kw"]
    clip, peep = kw.get("cell_clip"), kw.get("peepholes", False)

    def loss(params, x, h0, c0):
        o, hn, cn = jax_layers(jax, jnp, kind, params, x, h0, c0, jnp.asarray(lens),
                               v["sets"], clip, peep, kw.get("input_forget", False),
                               kw.get("reset_after", True))
        total = jnp.sum(o * g_out) + jnp.sum(hn * g_h)
        if g_c is not None:
            total = total + jnp.sum(cn * g_c)
        return total, (o, hn, cn)
    (gp, gx, gh0, gc0), (o, hn, cn) = jax.grad(loss, argnums=(0, 1, 2, 3), has_aux=True)(
        params, x, h0, c0)
    np.testing.assert_allclose(out, o, atol=1e-12)
    np.testing.assert_allclose(h_n, hn, atol=1e-12)
    np.testing.assert_allclose(grads[0], gx, atol=1e-10)
    np.testing.assert_allclose(grads[1], gh0, atol=1e-10)
    if c_n is not None:
        np.testing.assert_allclose(c_n, cn, atol=1e-12)
        np.testing.assert_allclose(grads[2], gc0, atol=1e-10)
    for k, row in enumerate(sfx):
        for d, s in enumerate(row):
            for key, n in names.items():
                if hasattr(m, n + s):
                    np.testing.assert_allclose(m.grads[n + s], gp[k][d][key], atol=1e-10,
                                               err_msg=n + s)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(variants())
def test_variants_equal_onnxruntime_and_jax(v):
    check_forward_against_onnxruntime(v)
    check_gradients_against_jax(v)


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(variants())
def test_variants_equal_onnxruntime_and_jax_long(v):
    check_forward_against_onnxruntime(v)
    check_gradients_against_jax(v)
