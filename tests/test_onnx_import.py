"""import_onnx against graphs nobody here wrote: ONNX's own conformance cases (regenerated
from the onnx package's case generators), torch's exporter in every layout, and random
graphs with and without plumbing run in onnxruntime — each imports exactly or is refused
by name, never a different function."""
import importlib
import inspect
import io
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab.io.onnx_import import read_graph

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from onnx_graphs import FAULTS, graph  # noqa: E402


def _conformance_cases():
    cases = []
    for mod in ("rnn", "gru", "lstm"):
        m = importlib.import_module(f"onnx.backend.test.case.node.{mod}")
        original = m.expect
        m.expect = lambda node, inputs, outputs, name, **kw: cases.append(
            (node, inputs, outputs, name))
        try:
            with np.errstate(all="ignore"):           # the generators' own arithmetic
                _export_all(m)
        finally:
            m.expect = original
    return cases


def _export_all(m):
    for _, cls in inspect.getmembers(m, inspect.isclass):
        if cls.__module__ == m.__name__:
            for attr in dir(cls):
                if attr.startswith("export"):
                    getattr(cls, attr)()


CASES = _conformance_cases()
# What rnnlab cannot compute, refused naming the attribute: nothing now (the GRU cases
# with linear_before_reset=0 import as GRU(reset_after=False), the reverse ones as
# direction="reverse" layers, test_lstm_with_peepholes as LSTM(peepholes=True))
REFUSED = {}


def test_the_conformance_cases_are_all_there():
    assert len(CASES) == 18
    assert set(REFUSED) <= {c[3] for c in CASES}


@pytest.mark.parametrize("node, inputs, outputs, name", CASES, ids=[c[3] for c in CASES])
def test_onnx_conformance_case(node, inputs, outputs, name):
    feeds = dict(zip([n for n in node.input if n], inputs))
    g = helper.make_graph(
        [node], name, [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(
            v.dtype), v.shape) for n, v in feeds.items()],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in node.output if n])
    weights = {k: v for k, v in feeds.items() if k != "X"}
    if name in REFUSED:
        with pytest.raises(ValueError, match=REFUSED[name]):
            rnnlab.import_onnx(helper.make_model(g), inputs=weights)
        return
    with pytest.raises(ValueError, match="is the graph input 'W'; pass its value as "
                       r"import_onnx\(path, inputs="):
        rnnlab.import_onnx(helper.make_model(g))
    layer, gmap = read_graph(helper.make_model(g), inputs=weights)
    got = gmap.run(layer, {"X": feeds["X"]})
    for n, want in zip([n for n in node.output if n], outputs):
        np.testing.assert_allclose(got[n], want, rtol=1e-5, atol=1e-5)


def _torch_export(cls, bf, L, bi, state_in, fold):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = getattr(torch.nn, cls)(3, 4, num_layers=L, bidirectional=bi, batch_first=bf)

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = layer

        def forward(self, x, *hx):
            return self.rnn(x, (hx if len(hx) > 1 else hx[0]) if hx else None)

    x = torch.randn(2, 5, 3) if bf else torch.randn(5, 2, 3)
    args, names = [x], ["x"]
    if state_in:
        for s in ("h0", "c0")[:2 if cls == "LSTM" else 1]:
            args.append(torch.randn(L * (2 if bi else 1), 2, 4))
            names.append(s)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrap().eval(), tuple(args), f, dynamo=False, input_names=names,
                          do_constant_folding=fold)
    return f.getvalue(), {n: a.numpy() for n, a in zip(names, args)}


def _ort(data, feeds):
    ort = pytest.importorskip("onnxruntime")
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds)))


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("bf, L, bi, state_in, fold", [
    (True, 1, False, False, True), (False, 2, True, False, False), (True, 2, True, True, True),
    (False, 1, False, True, False), (True, 2, False, False, False)])
def test_torch_exports_import_exactly(cls, bf, L, bi, state_in, fold):
    """torch's exporter: batch_first (the Transpose it inserts), stacked, bidirectional, h0
    as an input, weights folded or computed from constants (Slice / Concat / Unsqueeze)."""
    data, feeds = _torch_export(cls, bf, L, bi, state_in, fold)
    layer, gmap = read_graph(onnx.load_from_string(data))
    assert layer.batch_first == bf and layer.num_layers == L and layer.bidirectional == bi
    want = _ort(data, feeds)
    got = gmap.run(layer, feeds)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def _oracle(model, feeds, batch_major):
    """onnxruntime; ONNX's reference evaluator for layout=1, which onnxruntime lacks."""
    if not batch_major:
        return _ort(model.SerializeToString(), feeds)
    from onnx.reference import ReferenceEvaluator
    ref = ReferenceEvaluator(model)
    return dict(zip(ref.output_names, ref.run(None, feeds)))


SPEC = st.fixed_dictionaries({
    "op": st.sampled_from(["RNN", "GRU", "LSTM"]), "L": st.integers(1, 2),
    "D": st.integers(1, 2), "layout": st.sampled_from(["time", "transpose", "layout1"]),
    "out": st.sampled_from(["raw", "merged"]), "final": st.sampled_from([None, "h", "all"]),
    "states": st.sampled_from(["none", "zeros", "const", "input"]),
    "lens": st.sampled_from(["none", "const", "input"]),
    "weights": st.sampled_from(["init", "folded", "fed"]),
    "attrs": st.sampled_from([{}, {}, {"linear_before_reset": 0}, {"activations": ["Relu"]},
                              {"clip": 2.0}, {"direction": "reverse"},
                              {"activations": ["Softsign"], "clip": 1.5},
                              {"activations": ["HardSigmoid", "Elu"], "activation_alpha":
                               [0.3, 0.5], "activation_beta": [0.4]},
                              {"activations": ["Sigmoid", "Softplus", "ScaledTanh"],
                               "activation_alpha": [0.9], "activation_beta": [1.1],
                               "input_forget": 1},
                              {"clip": float("nan")}, {"clip": -1.0}]),
    "fault": st.sampled_from(FAULTS + (None, None, None))})


def _fits(spec):
    if spec["attrs"].get("linear_before_reset") is not None and spec["op"] != "GRU":
        return False
    acts = spec["attrs"].get("activations")
    if acts is not None and len(acts) != {"RNN": 1, "GRU": 2, "LSTM": 3}[spec["op"]]:
        return False
    if spec["attrs"].get("direction") and spec["D"] == 2:
        return False
    if spec["fault"] == "relu_between" and spec["L"] == 1:
        return False
    if spec["fault"] == "shift_h0" and spec["states"] != "input":
        return False
    if spec["layout"] == "layout1" and (spec["lens"] != "none" or spec["attrs"]):
        return False           # no oracle: onnxruntime refuses layout=1, and ONNX's
    #                            reference evaluator ignores sequence_lens and lacks Relu
    return not (spec["layout"] == "transpose" and spec["out"] == "raw")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(spec=SPEC.filter(_fits), seed=st.integers(0, 2 ** 16))
def test_random_graphs_import_exactly_or_are_refused(spec, seed):
    model, feeds, weights, accepted = graph(spec, seed)
    try:
        layer, gmap = read_graph(model, inputs=weights or None)
    except ValueError as exc:
        assert not accepted, f"refused a graph it reproduces: {exc}"
        assert "node" in str(exc) or "graph" in str(exc)
        return
    assert accepted, f"imported a graph it cannot reproduce: {spec}"
    want = _oracle(model, {**feeds, **weights}, spec["layout"] == "layout1")
    got = gmap.run(layer, feeds)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)


def _lstm_graph(h0=None, lens=None, pre=None, post=None):
    """One LSTM node (I=3, H=2) with optional constant initial_h / sequence_lens, and an
    optional op before (pre) or after (post) it on the data path."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array((rng.standard_normal(s) * 0.5).astype(np.float32), n)
             for n, s in (("W", (1, 8, 3)), ("R", (1, 8, 2)), ("B", (1, 16)))]
    nodes, x = [], "x"
    if pre == "slice":
        inits += [numpy_helper.from_array(np.array([v]), n) for n, v in
                  (("s0", 1), ("s1", 5), ("ax", 0))]
        nodes.append(helper.make_node("Slice", ["x", "s0", "s1", "ax"], ["xs"], name="cut"))
        x = "xs"
    ins = [x, "W", "R", "B", "", ""]
    if lens is not None:
        inits.append(numpy_helper.from_array(np.asarray(lens, np.int32), "lens"))
        ins[4] = "lens"
    if h0 is not None:
        inits.append(numpy_helper.from_array(np.asarray(h0, np.float32), "h0"))
        ins[5] = "h0"
    nodes.append(helper.make_node("LSTM", ins, ["Y", "Y_h"], hidden_size=2, name="lstm"))
    out = "Y"
    if post == "relu":
        nodes.append(helper.make_node("Relu", ["Y"], ["Yr"], name="act"))
        out = "Yr"
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                     [5, 2, 3])],
                          [helper.make_empty_tensor_value_info(o) for o in (out, "Y_h")],
                          inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_constant_states_and_lengths_are_kept():
    h0 = np.random.default_rng(2).standard_normal((1, 2, 2))
    model = _lstm_graph(h0=h0, lens=[3, 5])
    layer, gmap = read_graph(model)
    assert repr(layer) == ("ImportedLayer(LSTM(3, 2), graph constants: h0=(1, 2, 2), "
                           "lengths=[3, 5])")
    x = np.random.default_rng(3).standard_normal((5, 2, 3)).astype(np.float32)
    want = _ort(model.SerializeToString(), {"x": x})
    got = gmap.run(layer, {"x": x})
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
    out, (h, c) = layer(x)                       # the constants are used when none passed
    np.testing.assert_allclose(h, want["Y_h"], rtol=1e-5, atol=1e-5)
    out2, _ = layer(x, lengths=[5, 5])           # a caller's own replace them
    assert not np.allclose(out2, out)
    with pytest.raises(ValueError, match="constant initial state is for a batch of 2"):
        layer(x[:, :1])


def test_an_op_on_the_path_is_refused_by_name():
    with pytest.raises(ValueError, match="Slice 'cut' works on the data"):
        rnnlab.import_onnx(_lstm_graph(pre="slice"))
    with pytest.raises(ValueError, match="Relu 'act' works on the data.*onnx_layers"):
        rnnlab.import_onnx(_lstm_graph(post="relu"))


def test_weights_folded_from_constants():
    """W computed by Constant -> Cast -> Split -> Concat -> Transpose -> Unsqueeze -> Mul,
    R by ConstantOfShape + Add, B by Gather of a stack: folded in NumPy at import."""
    rng = np.random.default_rng(4)
    W = rng.standard_normal((12, 3)).astype(np.float32)
    n = [helper.make_node("Constant", [], ["w64"], value=numpy_helper.from_array(
            W.T.astype(np.float64))),
         helper.make_node("Cast", ["w64"], ["wt"], to=TensorProto.FLOAT),
         helper.make_node("Split", ["wt", "sp"], ["a", "b"], axis=1),
         helper.make_node("Concat", ["a", "b"], ["wc"], axis=1),
         helper.make_node("Transpose", ["wc"], ["w2"], perm=[1, 0]),
         helper.make_node("Unsqueeze", ["w2", "ax0"], ["w3"]),
         helper.make_node("Mul", ["w3", "two"], ["W"]),
         helper.make_node("ConstantOfShape", ["rshape"], ["r0"], value=numpy_helper.from_array(
             np.array([0.1], np.float32))),
         helper.make_node("Add", ["r0", "r0"], ["R"]),
         helper.make_node("Gather", ["bstack", "one"], ["B"], axis=0),
         helper.make_node("GRU", ["x", "W", "R", "B"], ["Y"], hidden_size=4,
                          linear_before_reset=1)]
    inits = [numpy_helper.from_array(v, k) for k, v in (
        ("sp", np.array([6, 6])), ("ax0", np.array([0])), ("two", np.float32(2)),
        ("rshape", np.array([1, 12, 4])), ("one", np.array(1)),
        ("bstack", rng.standard_normal((3, 1, 24)).astype(np.float32)))]
    g = helper.make_graph(n, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                 [5, 2, 3])],
                          [helper.make_empty_tensor_value_info("Y")], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    layer, gmap = read_graph(model)
    x = np.random.default_rng(5).standard_normal((5, 2, 3)).astype(np.float32)
    np.testing.assert_allclose(gmap.run(layer, {"x": x})["Y"],
                               _ort(model.SerializeToString(), {"x": x})["Y"], atol=1e-5)
    np.testing.assert_allclose(layer.weight_ih_l0[4:8], 2 * W[:4], rtol=1e-6)  # r <-> z


def _nested(kind):
    """The LSTM of _lstm_graph inside an If branch (both branches) or a Loop body; its
    weights are initializers of the outer graph (outer scope)."""
    inner = _lstm_graph()
    weights = list(inner.graph.initializer)
    body_nodes = list(inner.graph.node)
    if kind == "If":
        branch = lambda tag: helper.make_graph(  # noqa: E731
            [helper.make_node("LSTM", ["x", "W", "R", "B"], [f"Y{tag}"], hidden_size=2,
                              name=f"lstm_{tag}")], tag, [],
            [helper.make_empty_tensor_value_info(f"Y{tag}")])
        node = helper.make_node("If", ["cond"], ["out"], then_branch=branch("then"),
                                else_branch=branch("else"), name="choose")
        ins = [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])]
    else:
        body = helper.make_graph(
            body_nodes[:1] + [helper.make_node("Identity", ["c"], ["c_out"])], "body",
            [helper.make_tensor_value_info("i", TensorProto.INT64, []),
             helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
             helper.make_empty_tensor_value_info("Y")])
        node = helper.make_node("Loop", ["n", ""], ["out"], body=body, name="repeat")
        ins = [helper.make_tensor_value_info("n", TensorProto.INT64, [])]
    g = helper.make_graph([node], "g", ins + [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [5, 2, 3])], [helper.make_empty_tensor_value_info("out")],
        weights)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("kind", ["If", "Loop"])
def test_nodes_inside_subgraphs_are_listed_and_imported_alone(kind):
    model = _nested(kind)
    listed = rnnlab.onnx_layers(model)
    assert [e["op"] for e in listed] == ["LSTM"] * (2 if kind == "If" else 1)
    first = listed[0]
    assert first["path"].startswith(f"{kind} ") and first["constant_weights"]
    assert (first["hidden_size"], first["input_size"]) == (2, 3)
    with pytest.raises(ValueError, match="sit inside subgraphs.*node=NAME"):
        rnnlab.import_onnx(model)
    layer = rnnlab.import_onnx(model, node=first["name"])
    x = np.random.default_rng(6).standard_normal((5, 2, 3)).astype(np.float32)
    want = _ort(_lstm_graph().SerializeToString(), {"x": x})["Y"]      # the node alone
    np.testing.assert_allclose(np.asarray(layer(x)[0]), want[:, 0], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="no recurrent node of that name"):
        rnnlab.import_onnx(model, node="nope")


def test_torch_cell_exports_are_refused_with_a_way_forward(tmp_path):
    torch = pytest.importorskip("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.GRUCell(3, 4), (torch.randn(2, 3),),
                          str(tmp_path / "cell.onnx"), dynamo=False)
    with pytest.raises(ValueError, match="no RNN, GRU or LSTM node.*Gemm.*state_dict"):
        rnnlab.import_onnx(tmp_path / "cell.onnx")


def test_inputs_must_name_graph_inputs():
    with pytest.raises(ValueError, match="'Q' is not an input of the graph"):
        rnnlab.import_onnx(_lstm_graph(), inputs={"Q": np.zeros(1)})
    with pytest.raises(TypeError, match="inputs must be a dict"):
        rnnlab.import_onnx(_lstm_graph(), inputs=[1])


def test_convert_compares_with_the_source_in_onnxruntime(tmp_path):
    pytest.importorskip("onnxruntime")
    data, _ = _torch_export("GRU", True, 1, False, False, True)
    (tmp_path / "t.onnx").write_bytes(data)
    from rnnlab.tools import cli
    lines = []
    err = __import__("rnnlab.tools.convert", fromlist=["convert"]).convert(
        str(tmp_path / "t.onnx"), str(tmp_path / "t.safetensors"), print_fn=lines.append)
    assert err < 1e-5 and "ran the source in onnxruntime" in lines[-1]
    onnx.save(_lstm_graph(h0=np.ones((1, 2, 2))), str(tmp_path / "c.onnx"))
    assert cli.main(["convert", str(tmp_path / "c.onnx"), str(tmp_path / "c.npz")]) == 2
    assert not (tmp_path / "c.npz").exists()


@settings(max_examples=int(__import__("os").environ.get("RNNLAB_FUZZ", 40)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(spec=SPEC.filter(_fits), flips=st.lists(st.tuples(st.integers(0, 10 ** 6),
                                                          st.integers(0, 255)), max_size=4))
def test_damaged_graphs_are_value_errors(tmp_path_factory, spec, flips):
    """Bytes of a valid graph changed at random: imported or a ValueError naming the file,
    never another exception."""
    model, _, weights, _ = graph(spec)
    data = bytearray(model.SerializeToString())
    for at, value in flips:
        data[at % len(data)] = value
    path = tmp_path_factory.mktemp("g") / "g.onnx"
    path.write_bytes(bytes(data))
    for call in (lambda: rnnlab.import_onnx(path), lambda: rnnlab.onnx_layers(path)):
        try:
            call()
        except ValueError as exc:
            assert "g.onnx" in str(exc)
