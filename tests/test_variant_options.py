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
from variant_oracles import float64_jax  # noqa: F401  (the autouse fixture)
from variant_oracles import N_ACTS, TAKES, flat_lists, jax_layers, ort_layers

jax = pytest.importorskip("jax")
jnp = jax.numpy


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


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
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


# -- everything else keeps working for every option ---------------------------------------
OPTION_LAYERS = [
    (rnnlab.LSTM, dict(peepholes=True, cell_clip=1.5, num_layers=2)),
    (rnnlab.LSTM, dict(input_forget=True, activations=["HardSigmoid", "Tanh", "Softsign"])),
    (rnnlab.GRU, dict(reset_after=False, cell_clip=0.8, activations=["Sigmoid", "Elu"])),
    (rnnlab.RNN, dict(activations=["Softplus"], num_layers=2)),
]


@pytest.mark.parametrize("cls, kw", OPTION_LAYERS, ids=lambda v: str(v)[:40])
def test_steps_frozen_reference_files_and_cells(tmp_path, cls, kw):
    from rnnlab import reference
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    m = cls(3, 4, dtype=np.float64, seed=2, **kw)
    out = m(x, lengths=[5, 3])[0]
    ys, state = [], None
    for t in range(5):
        y, state = m.step(x[t], state)
        ys.append(y)
    full = m(x)[0]
    np.testing.assert_allclose(np.stack(ys), full, atol=1e-13)
    frozen, ys, state = m.eval().freeze(), [], None
    for t in range(5):
        y, state = frozen.step(x[t], state)
        ys.append(y)
    np.testing.assert_allclose(np.stack(ys), full, atol=1e-13)
    m.train()
    out = m(x, lengths=[5, 3])[0]
    g = np.random.default_rng(3).standard_normal(out.shape)
    dx = m.backward(g)[0]
    ran = reference.run(m, x, lengths=[5, 3])
    back = reference.backprop(ran, g)
    np.testing.assert_allclose(ran["output"], out, atol=1e-13)
    np.testing.assert_allclose(back["dx"], dx, atol=1e-12)
    for name, grad in m.grads.items():
        np.testing.assert_allclose(back["grads"][name], grad, atol=1e-12, err_msg=name)
    for ext in ("safetensors", "npz"):
        rnnlab.save(m, tmp_path / f"m.{ext}")
        again = rnnlab.load(tmp_path / f"m.{ext}")
        assert repr(again) == repr(m)
        np.testing.assert_allclose(again(x)[0], full, atol=0)
    if kw.get("num_layers", 1) == 1:                # a cell loop equals the layer
        cell_kw = {k: v for k, v in kw.items() if k != "num_layers"}
        cell = getattr(rnnlab, cls.__name__ + "Cell")(3, 4, dtype=np.float64, seed=4,
                                                      **cell_kw)
        layer = cls(3, 4, dtype=np.float64, **kw)
        layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
        hs, _ = rnnlab.run_cells(cell, x)
        np.testing.assert_allclose(hs, layer(x)[0], atol=1e-13)
        assert "weight_p" in cell.state_dict() if kw.get("peepholes") else True


def test_from_state_dict_takes_options_and_infers_none():
    m = rnnlab.LSTM(3, 4, peepholes=True, cell_clip=2.0)
    sd = m.state_dict()
    with pytest.raises(ValueError, match="hold peepholes .* pass peepholes=True"):
        rnnlab.from_state_dict(sd)
    back = rnnlab.from_state_dict(sd, peepholes=True, cell_clip=2.0)
    assert repr(back) == repr(m)
    assert repr(rnnlab.from_state_dict(rnnlab.GRU(3, 4).state_dict(), cell_clip=1.0)) == \
        "GRU(3, 4, cell_clip=1.0)"


def test_options_refused_by_name():
    for call, message in [
            (lambda: rnnlab.GRU(3, 4, peepholes=True), "peepholes is only for LSTM"),
            (lambda: rnnlab.RNN(3, 4, input_forget=True), "input_forget is only for LSTM"),
            (lambda: rnnlab.LSTM(3, 4, cell_clip=0), "positive finite"),
            (lambda: rnnlab.LSTM(3, 4, cell_clip="1"), "cell_clip must be a positive"),
            (lambda: rnnlab.LSTM(3, 4, activations=["Tanh"]), "LSTM uses 3 activation"),
            (lambda: rnnlab.LSTM(3, 4, activations=["Sigmoid", "Tanh", "Tanhh"]),
             "unknown activation 'Tanhh'"),
            (lambda: rnnlab.RNN(3, 4, activations=["Affine"]), "Affine needs activation_alpha"),
            (lambda: rnnlab.RNN(3, 4, activations=["Tanh", "Relu"]), "one direction"),
            (lambda: rnnlab.RNN(3, 4, nonlinearity="relu", activations=["Tanh"]), "not both"),
            (lambda: rnnlab.LSTM(3, 4, peepholes=1), "peepholes must be a bool")]:
        with pytest.raises((ValueError, TypeError), match=message):
            call()
    # options that say torch's own function give torch's family (the compiled paths)
    assert rnnlab.LSTM(3, 4, activations=["sigmoid", "tanh", "TANH"]).family is \
        rnnlab.LSTM(3, 4).family
    assert rnnlab.RNN(3, 4, activations=["Relu"]).family is \
        rnnlab.RNN(3, 4, nonlinearity="relu").family
    # ... and says so, so that a file rebuilds the same function
    for cls in (rnnlab.RNN, rnnlab.RNNCell):
        m = cls(3, 4, activations=["Relu"])
        assert m.nonlinearity == "relu" and "nonlinearity='relu'" in repr(m)
        assert type(m)(**m.config()).family is m.family


@pytest.mark.parametrize("cls, kw", OPTION_LAYERS + [
    (rnnlab.GRU, dict(bidirectional=True, activations=["Sigmoid", "Tanh", "HardSigmoid",
                                                       "Softsign"]))],
    ids=lambda v: str(v)[:40])
def test_onnx_both_ways_and_torch_refused(tmp_path, cls, kw):
    ort = pytest.importorskip("onnxruntime")
    from rnnlab.tools import cli
    m = cls(3, 4, seed=6, **kw)
    rnnlab.export_onnx(m, tmp_path / "v.onnx", lengths=True)
    x = np.random.default_rng(2).standard_normal((5, 2, 3)).astype(np.float32)
    lens = np.array([5, 2])
    want = ort.InferenceSession(str(tmp_path / "v.onnx"), providers=[
        "CPUExecutionProvider"]).run(None, {"input": x, "lengths": lens})
    got = m(x, lengths=lens)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-5, atol=2e-6)
    back = rnnlab.import_onnx(tmp_path / "v.onnx")
    assert repr(back) == repr(m)
    np.testing.assert_allclose(back(x, lengths=lens)[0], got[0], atol=0)
    rnnlab.save(m, tmp_path / "v.safetensors")
    assert cli.main(["convert", str(tmp_path / "v.safetensors"), str(tmp_path / "v.pt")]) == 2
    assert not (tmp_path / "v.pt").exists()


def test_explain_and_train_take_the_options(tmp_path, capsys):
    from rnnlab.tools import cli
    assert cli.main(["explain", "lstm", "--peepholes", "--cell-clip", "1.5", "--activations",
                     "HardSigmoid,Tanh,Softsign", "--lengths", "3,1"]) == 0
    out = capsys.readouterr().out
    assert "p_o * c'" in out and "h' = o * Softsign(c')" in out and "0 unexpected" in out
    assert max(len(line) for line in out.splitlines()) <= 100
    assert cli.main(["explain", "gru", "--peepholes"]) == 2
    assert "peepholes is only for LSTM" in capsys.readouterr().err
    run = tmp_path / "run"
    assert cli.main(["train", "adding", "--model", "lstm", "--peepholes", "--cell-clip", "5",
                     "--steps", "4", "--hidden", "8", "--out", str(run)]) == 0
    model = rnnlab.load(run / "model.safetensors")
    assert "peepholes=True" in repr(model.rnn) and "cell_clip=5.0" in repr(model.rnn)
    assert cli.main(["train", "adding", "--model", "lstm", "--steps", "6", "--hidden", "8",
                     "--resume", str(run)]) == 2
    assert "variant options" in capsys.readouterr().err


@pytest.mark.parametrize("kind, options", [
    ("lstm", dict(peepholes=True, cell_clip=1.5)),
    ("lstm", dict(input_forget=True, activations=["Softsign", "Elu", "Softplus"])),
    ("gru", dict(reset_after=False, activations=["Sigmoid", "ScaledTanh"],
                 activation_alpha=[1.2], activation_beta=[0.8])),
    ("rnn", dict(activations=["LeakyRelu"], activation_alpha=[0.1], cell_clip=2.0))])
def test_central_differences(kind, options):
    """rnnlab's gradcheck (central differences of the loss) on variant layers, two layers,
    bidirectional, with lengths."""
    from rnnlab.tools.gradcheck import TOL, GradCase, check_layer
    case = GradCase(kind, num_layers=2, bidirectional=True, lengths=[4, 2, 3], seed=3)
    case.options = options
    errors = check_layer(case)
    assert "weight_p_l1_reverse" in errors or not options.get("peepholes")
    assert max(errors.values()) <= TOL, errors


_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                  st.text(max_size=12), st.lists(st.sampled_from(sorted(TAKES) + ["tanh", "x", 1]),
                                                 max_size=7),
                  st.lists(st.floats(allow_nan=True), max_size=4))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(cls=st.sampled_from(["RNN", "GRU", "LSTM", "RNNCell", "GRUCell", "LSTMCell"]),
       kw=st.dictionaries(st.sampled_from(["activations", "activation_alpha", "activation_beta",
                                           "cell_clip", "peepholes", "input_forget",
                                           "reset_after"]), _JUNK, max_size=4))
def test_option_values_are_taken_or_refused_clearly(cls, kw):
    """Whatever comes for the options, a layer is built or a ValueError / TypeError says
    what was expected; nothing else escapes (and no warning)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            m = getattr(rnnlab, cls)(3, 2, **kw)
        except (ValueError, TypeError) as e:
            assert str(e)
            return
        x = np.full((2, 1, 3) if not cls.endswith("Cell") else (1, 3), 30.0, np.float32)
        m(x)                                        # large inputs: no RuntimeWarning


def test_peepholes_equal_onnx_reference_evaluator_in_float64():
    """ONNX's reference evaluator implements peepholes (not clip, input_forget or other
    activations): a float64 LSTM node with P equals LSTM(peepholes=True) to 1e-12."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from onnx.reference import ReferenceEvaluator
    from variant_oracles import to_onnx
    m = rnnlab.LSTM(3, 4, peepholes=True, dtype=np.float64, seed=8)
    x = np.random.default_rng(8).standard_normal((6, 2, 3))
    inits = [numpy_helper.from_array(to_onnx(m.weight_ih_l0, "lstm")[None], "W"),
             numpy_helper.from_array(to_onnx(m.weight_hh_l0, "lstm")[None], "R"),
             numpy_helper.from_array(np.concatenate([to_onnx(m.bias_ih_l0, "lstm"),
                                                     to_onnx(m.bias_hh_l0, "lstm")])[None], "B"),
             numpy_helper.from_array(m.weight_p_l0[None], "P")]
    node = helper.make_node("LSTM", ["X", "W", "R", "B", "", "", "", "P"], ["Y", "Yh", "Yc"],
                            hidden_size=4)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.DOUBLE,
                                                                      list(x.shape))],
                          [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None)
                           for n in ("Y", "Yh", "Yc")], inits)
    y, yh, yc = ReferenceEvaluator(helper.make_model(g)).run(None, {"X": x})
    out, (h, c) = m(x)
    np.testing.assert_allclose(out, y[:, 0], atol=1e-12)
    np.testing.assert_allclose(h, yh, atol=1e-12)
    np.testing.assert_allclose(c, yc, atol=1e-12)
