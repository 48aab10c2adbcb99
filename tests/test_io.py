"""Weights in and out: rnnlab's files, torch checkpoints without torch (and never running
code from them), state_dict inference, ONNX and Keras both ways checked in their runtimes,
and rnnlab convert."""
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.tools import cli

rng = np.random.default_rng(0)
CONFIGS = [(cls, dict(num_layers=L, bidirectional=bi, batch_first=bf, bias=bias, **extra))
           for cls, extra in [(RNN, {"nonlinearity": "tanh"}), (RNN, {"nonlinearity": "relu"}),
                              (GRU, {}), (LSTM, {}), (LSTM, {"proj_size": 2})]
           for L, bi, bf, bias in [(1, False, False, True), (2, True, False, True),
                                   (2, False, True, False), (3, True, True, True)]]
IDS = [f"{c.__name__}-{k.get('nonlinearity', '')}{'P' if k.get('proj_size') else ''}-L"
       f"{k['num_layers']}{'-bi' if k['bidirectional'] else ''}{'-bf' if k['batch_first'] else ''}"
       f"{'' if k['bias'] else '-nobias'}" for c, k in CONFIGS]


def _inputs(m, N=3, T=5, dtype=np.float32):
    D, H_out = m.num_directions, m.proj_size or m.hidden_size
    x = rng.standard_normal((N, T, m.input_size) if m.batch_first else (T, N, m.input_size))
    h0 = rng.standard_normal((m.num_layers * D, N, H_out)) * 0.5
    c0 = rng.standard_normal((m.num_layers * D, N, m.hidden_size)) * 0.5
    return x.astype(dtype), h0.astype(dtype), (c0.astype(dtype) if m.family.has_cell_state
                                               else None)


def _run(m, x, h0, c0, lengths=None):
    with rnnlab.no_grad():
        out, st = m(x, (h0, c0) if c0 is not None else h0, lengths=lengths)
    return [out] + (list(st) if c0 is not None else [st])


# -- rnnlab's own files ------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".safetensors", ".npz"])
@pytest.mark.parametrize("make", [
    lambda: LSTM(3, 5, 2, bidirectional=True, proj_size=2, dtype=np.float64),
    lambda: RNN(3, 4, nonlinearity="relu", bias=False, batch_first=True, dropout=0.0),
    lambda: rnnlab.GRUCell(3, 4), lambda: rnnlab.LSTMCell(2, 3, bias=False),
    lambda: rnnlab.RNNCell(2, 3, nonlinearity="relu"), lambda: rnnlab.Linear(4, 2),
    lambda: rnnlab.Embedding(7, 3, padding_idx=1)])
def test_save_load_round_trip(tmp_path, ext, make):
    m = make()
    path = tmp_path / f"m{ext}"
    rnnlab.save(m, path)
    back = rnnlab.load(path)
    assert type(back) is type(m) and back.config() == m.config() and back.dtype == m.dtype
    for (n, a), (_, b) in zip(m.named_parameters(), back.named_parameters()):
        np.testing.assert_array_equal(a, b, err_msg=n)
    if ext == ".npz":
        assert "__rnnlab__" in np.load(path, allow_pickle=False).files


def test_safetensors_interoperate_with_the_reference_package(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m = GRU(3, 4, 2)
    rnnlab.save(m, tmp_path / "a.safetensors")
    theirs = st.load_file(str(tmp_path / "a.safetensors"))
    assert set(theirs) == set(m.state_dict())
    st.save_file(m.state_dict(), str(tmp_path / "b.safetensors"))
    layer = rnnlab.from_state_dict(rnnlab.io.read_weights(tmp_path / "b.safetensors")[0])
    np.testing.assert_array_equal(layer.weight_hh_l1, m.weight_hh_l1)


def test_file_errors(tmp_path):
    with pytest.raises(ValueError, match="not .txt|.safetensors and"):
        rnnlab.save(GRU(3, 4), tmp_path / "m.txt")
    with pytest.raises(TypeError):
        rnnlab.save(object(), tmp_path / "m.npz")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\xff" * 20)
    with pytest.raises(ValueError, match="not a safetensors file"):
        rnnlab.load(bad)
    np.savez(tmp_path / "plain.npz", weight_ih_l0=np.ones((12, 3)))
    with pytest.raises(ValueError, match="from_state_dict"):
        rnnlab.load(tmp_path / "plain.npz")


# -- torch checkpoints without torch -------------------------------------------------------------
def test_load_torch_matches_torch(tmp_path):
    torch = pytest.importorskip("torch")
    m = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True)
    opt = torch.optim.Adam(m.parameters())
    m(torch.randn(4, 2, 3))[0].sum().backward()
    opt.step()
    ck = {"epoch": 7, "model": m.state_dict(), "optimizer": opt.state_dict(),
          "view": torch.arange(10.0)[3:7:2], "names": ["a", ("b", None)], "x": 1.5}
    torch.save(ck, tmp_path / "ck.pt")
    got = rnnlab.load_torch(tmp_path / "ck.pt")
    assert got["epoch"] == 7 and got["names"] == ["a", ("b", None)] and got["x"] == 1.5
    np.testing.assert_array_equal(got["view"], [3.0, 5.0])
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(got["model"][k], v.numpy())
    assert got["optimizer"]["param_groups"][0]["lr"] == 1e-3
    layer = rnnlab.from_state_dict(got["model"])
    assert repr(layer) == "LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2)"
    x = np.random.default_rng(0).standard_normal((4, 2, 3)).astype(np.float32)
    with torch.no_grad():
        want = m(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(_run(layer, x, *_zero_states(layer, 2))[0], want, atol=1e-6)


def _zero_states(m, N):
    D, H_out = m.num_directions, m.proj_size or m.hidden_size
    h0 = np.zeros((m.num_layers * D, N, H_out), np.float32)
    c0 = np.zeros((m.num_layers * D, N, m.hidden_size), np.float32)
    return h0, (c0 if m.family.has_cell_state else None)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo PWNED > pwned.txt",))


def test_malicious_checkpoint_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"model": _Evil()}, protocol=2)
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", payload)
        z.writestr("evil/byteorder", "little")
    with pytest.raises(ValueError, match="system"):
        rnnlab.load_torch(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned.txt").exists()
    for module, name in (("builtins", "eval"), ("torch", "load"), ("numpy", "load")):
        data = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"."
        with zipfile.ZipFile(tmp_path / "e2.pt", "w") as z:
            z.writestr("e2/data.pkl", data)
        with pytest.raises(ValueError, match=f"{module}.{name}"):
            rnnlab.load_torch(tmp_path / "e2.pt")
    (tmp_path / "notorch.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="neither"):
        rnnlab.load_torch(tmp_path / "notorch.pt")
    evil = b"".join(pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {}))
    (tmp_path / "evil_legacy.pt").write_bytes(evil + pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(ValueError, match="system"):
        rnnlab.load_torch(tmp_path / "evil_legacy.pt")
    assert not (tmp_path / "pwned.txt").exists()


def test_load_torch_legacy_format(tmp_path):
    torch = pytest.importorskip("torch")
    m = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True)
    ck = {"epoch": 2, "model": m.state_dict(), "t": torch.arange(6.0).reshape(2, 3).t(),
          "ints": torch.arange(3)}
    torch.save(ck, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    got = rnnlab.load_torch(tmp_path / "old.pt")
    assert got["epoch"] == 2
    np.testing.assert_array_equal(got["t"], ck["t"].numpy())
    np.testing.assert_array_equal(got["ints"], [0, 1, 2])
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(got["model"][k], v.numpy())
    assert repr(rnnlab.from_state_dict(got["model"])) == "GRU(3, 4, num_layers=2, bidirectional=True)"
    for cut in (1, 3, 8, 13, 50, 200):
        (tmp_path / "cut.pt").write_bytes((tmp_path / "old.pt").read_bytes()[:-cut])
        with pytest.raises(ValueError, match="truncated|not described"):
            rnnlab.load_torch(tmp_path / "cut.pt")


def test_torch_free(tmp_path):
    """save, load, load_torch, from_state_dict and convert to .safetensors with torch made
    unimportable."""
    torch = pytest.importorskip("torch")
    torch.save({"encoder.weight_ih_l0": torch.randn(12, 3), "encoder.weight_hh_l0": torch.randn(12, 4),
                "encoder.bias_ih_l0": torch.randn(12), "encoder.bias_hh_l0": torch.randn(12)},
               tmp_path / "enc.pt")
    code = f"""
import sys
sys.modules["torch"] = None          # import torch now fails
import numpy as np, rnnlab
sd = rnnlab.load_torch({str(tmp_path / 'enc.pt')!r})
g = rnnlab.from_state_dict(sd, prefix="encoder.")
rnnlab.save(g, {str(tmp_path / 'g.npz')!r})
assert repr(rnnlab.load({str(tmp_path / 'g.npz')!r})) == "GRU(3, 4)"
from rnnlab.tools.cli import main
assert main(["convert", {str(tmp_path / 'enc.pt')!r}, {str(tmp_path / 'g.safetensors')!r}]) == 0
print("torch-free ok")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0 and "torch-free ok" in res.stdout, res.stderr


# -- from_state_dict ---------------------------------------------------------------------------
def test_from_state_dict_infers_and_refuses():
    torch = pytest.importorskip("torch")
    for tm, kw in [(torch.nn.GRU(3, 4, 3, bias=False), {}),
                   (torch.nn.RNN(2, 5, 2, nonlinearity="relu", bidirectional=True),
                    {"nonlinearity": "relu"}),
                   (torch.nn.LSTM(2, 6, proj_size=3), {})]:
        layer = rnnlab.from_state_dict(tm.state_dict(), **kw, batch_first=True)
        assert layer.batch_first and layer.config()["num_layers"] == tm.num_layers
        for k, v in tm.state_dict().items():
            np.testing.assert_array_equal(getattr(layer, k), v.numpy())
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnlab.from_state_dict(torch.nn.RNN(2, 3).state_dict())
    two = {**{f"a.{k}": v for k, v in torch.nn.GRU(2, 3).state_dict().items()},
           **{f"b.{k}": v for k, v in torch.nn.GRU(2, 3).state_dict().items()}}
    with pytest.raises(ValueError, match=r"\['a.', 'b.'\]"):
        rnnlab.from_state_dict(two)
    assert rnnlab.from_state_dict(two, prefix="b.").hidden_size == 3
    with pytest.raises(ValueError, match="prefix 'c.'"):
        rnnlab.from_state_dict(two, prefix="c.")
    with pytest.raises(TypeError):
        rnnlab.from_state_dict("model.pt")


# -- ONNX ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lengths", [False, True])
@pytest.mark.parametrize("cls, kw", CONFIGS, ids=IDS)
def test_onnx_export_runs_in_onnxruntime(tmp_path, cls, kw, lengths):
    ort = pytest.importorskip("onnxruntime")
    m = cls(3, 4, **kw, seed=1)
    states = kw["num_layers"] != 2                     # with and without state inputs
    rnnlab.export_onnx(m, tmp_path / "m.onnx", lengths=lengths, states=states)
    s = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x, h0, c0 = _inputs(m)
    if not states:                                     # the graph starts from zeros
        h0, c0 = np.zeros_like(h0), (None if c0 is None else np.zeros_like(c0))
    feeds = {"input": x, "h0": h0} if states else {"input": x}
    if c0 is not None and states:
        feeds["c0"] = c0
    lens = np.array([5, 2, 3]) if lengths else None
    if lengths:
        feeds["lengths"] = lens
    for ours, theirs in zip(_run(m, x, h0, c0, lens), s.run(None, feeds)):
        np.testing.assert_allclose(theirs, ours, atol=2e-5, rtol=0)
    back = rnnlab.import_onnx(tmp_path / "m.onnx")
    for a, b in zip(_run(back, x, h0, c0, lens), _run(m, x, h0, c0, lens)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_import_torch_exported_onnx(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import warnings
    for tm in (torch.nn.GRU(3, 4, num_layers=2, bidirectional=True), torch.nn.LSTM(3, 4, 2),
               torch.nn.RNN(3, 4, nonlinearity="relu")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(tm, (torch.randn(5, 2, 3),), str(tmp_path / "t.onnx"),
                              dynamo=False)
        m = rnnlab.import_onnx(tmp_path / "t.onnx")
        x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
        with torch.no_grad():
            want = tm(torch.from_numpy(x))[0].numpy()
        np.testing.assert_allclose(_run(m, x, *_zero_states(m, 2))[0], want, atol=1e-6)


def _hand_graph(tmp_path, op, **attrs):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    H, I = 2, 3
    inits = [numpy_helper.from_array(np.ones((1, G * H, I), np.float32), "W"),
             numpy_helper.from_array(np.ones((1, G * H, H), np.float32), "R")]
    ins = ["X", "W", "R"]
    if attrs.pop("peepholes", False):
        inits.append(numpy_helper.from_array(np.ones((1, 3 * H), np.float32), "P"))
        ins += ["", "", "", "", "P"]
    node = helper.make_node(op, ins, ["Y"], hidden_size=H, **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                          [5, 1, I])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "h.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.mark.parametrize("op, attrs, want", [
    ("LSTM", dict(clip=3.0), "LSTM(3, 2, bias=False, cell_clip=3.0)"),
    ("LSTM", dict(input_forget=1), "LSTM(3, 2, bias=False, input_forget=True)"),
    ("LSTM", dict(peepholes=True), "LSTM(3, 2, bias=False, peepholes=True)"),
    ("LSTM", dict(activations=["HardSigmoid", "Tanh", "Tanh"]),
     "LSTM(3, 2, bias=False, activations=['HardSigmoid', 'Tanh', 'Tanh'], "
     "activation_alpha=[0.2], activation_beta=[0.5])"),
    ("RNN", dict(activations=["Sigmoid"]), "RNN(3, 2, bias=False, activations=['Sigmoid'])"),
])
def test_onnx_import_takes_the_variants(tmp_path, op, attrs, want):
    """Options torch lacks import as rnnlab's variant layers and compute what onnxruntime
    computes (tests/test_variant_options.py draws them all)."""
    ort = pytest.importorskip("onnxruntime")
    path = _hand_graph(tmp_path, op, **attrs)
    m = rnnlab.import_onnx(path)
    assert repr(m) == want
    x = np.random.default_rng(0).standard_normal((5, 1, 3)).astype(np.float32) * 0.3
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"X": x})
    np.testing.assert_allclose(m(x)[0], y[0][:, 0], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("op, attrs, message", [
    ("LSTM", dict(activations=["ScaledTanh", "Tanh", "Tanh"]), "ScaledTanh needs "
     "activation_alpha"),
    ("RNN", dict(activations=["Gelu"]), "unknown activation 'Gelu'"),
    ("RNN", dict(activations=["Tanh", "Tanh"]), "2 activations; RNN with 1 direction"),
    ("RNN", dict(activations=["Tanh"], activation_alpha=[1.0]), "left over"),
    ("GRU", dict(input_forget=1), "input_forget is an LSTM attribute"),
    ("LSTM", dict(clip=-1.0), "cell_clip must be a positive"),
])
def test_onnx_import_refuses_by_name(tmp_path, op, attrs, message):
    path = _hand_graph(tmp_path, op, **attrs)
    with pytest.raises(ValueError, match=message):
        rnnlab.import_onnx(path)


def test_onnx_import_accepts_a_hand_built_gru(tmp_path):
    m = rnnlab.import_onnx(_hand_graph(tmp_path, "GRU", linear_before_reset=1))
    assert repr(m) == "GRU(3, 2, bias=False)"


# -- rnnlab convert ------------------------------------------------------------------------------
def test_convert_every_direction(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("keras")

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True)
            self.head = torch.nn.Linear(8, 2)
    torch.save({"epoch": 1, "model": Model().state_dict()}, tmp_path / "m.pt")
    assert cli.main(["convert", str(tmp_path / "m.pt"), str(tmp_path / "a.onnx")]) == 2
    err = capsys.readouterr().err
    assert "not used" in err and len(err.strip().splitlines()) == 1
    src = str(tmp_path / "m.pt")
    chain = [".safetensors", ".onnx", ".keras", ".npz", ".pt"]
    for ext in chain:
        out = str(tmp_path / f"x{ext}")
        assert cli.main(["convert", src, out, "--prefix", "encoder.", "--allow-unused"]
                        if src.endswith("m.pt") else ["convert", src, out]) == 0, ext
        text = capsys.readouterr().out
        assert " ok" in text and "max |difference|" in text
        src = out
    assert cli.main(["convert", src, str(tmp_path / "y.txt")]) == 2
    assert cli.main(["convert", str(tmp_path / "nope.pt"), str(tmp_path / "y.npz")]) == 2


# -- damaged files: only ValueError / TypeError --------------------------------------------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("files")
    sd = torch.nn.LSTM(2, 3).state_dict()
    torch.save({"model": sd}, d / "zip.pt")
    torch.save({"model": sd}, d / "legacy.pt", _use_new_zipfile_serialization=False)
    rnnlab.save(LSTM(2, 3), d / "m.safetensors")
    rnnlab.save(LSTM(2, 3), d / "m.npz")
    return {p.suffix + p.stem: p.read_bytes() for p in d.iterdir()}


@settings(max_examples=int(os.environ.get("RNNLAB_FILE_FUZZ", 60)), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from([".ptzip", ".ptlegacy", ".safetensorsm", ".npzm"]),
       cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 10 ** 6),
                                                         st.integers(0, 255)), max_size=4))
def test_damaged_files_give_clear_errors(good_files, tmp_path, which, cut, flips):
    data = bytearray(good_files[which])
    data = data[:max(0, len(data) - cut)]
    for pos, val in flips:
        if data:
            data[pos % len(data)] = val
    path = tmp_path / ("f" + (".pt" if which.startswith(".pt") else which[:-1]))
    path.write_bytes(bytes(data))
    reader = rnnlab.load_torch if which.startswith(".pt") else rnnlab.load
    try:
        reader(path)
    except (ValueError, TypeError) as exc:
        assert str(exc)
