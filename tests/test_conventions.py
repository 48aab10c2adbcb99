"""Small conventions, each where it once went wrong: torch's exception types, the byte
order, what a list is read as, gradient dtypes, files the reference implementations refuse,
and sums that overflow."""
import json
import struct

import numpy as np
import pytest

import rnnlab
from rnnlab import GRU


def test_complex_weights_are_a_type_error_listing_every_problem():
    m = GRU(2, 3)
    sd = {k: v.astype(np.complex64) for k, v in m.state_dict().items()}
    sd["weight_hh_l0"] = np.zeros((5, 5))
    with pytest.raises(TypeError, match="complex") as exc:
        m.load_state_dict(sd)
    assert isinstance(exc.value, ValueError) and "size mismatch" in str(exc.value)


def test_nonfinite_clip_error_is_torchs_runtime_error():
    m = GRU(2, 3)
    out, _ = m(np.ones((2, 1, 2), np.float32))
    m.backward(np.full(out.shape, np.inf, np.float32))
    with pytest.raises(RuntimeError, match="non-finite"):
        rnnlab.clip_grad_norm_([m], 1.0, error_if_nonfinite=True)


def test_big_endian_input_is_the_same_numbers():
    m = GRU(2, 3, dtype=np.float64).eval()
    x = np.random.default_rng(0).standard_normal((4, 1, 2))
    np.testing.assert_array_equal(m(x.astype(">f8"))[0], m(x)[0])
    out, _ = m.train()(x.astype(">f8"))
    m.backward(np.ones_like(out).astype(">f8"))


def test_a_list_is_named_as_a_list():
    with pytest.raises(TypeError, match="got a list, which NumPy reads as float64"):
        GRU(2, 3)([[[1.0, 2.0]]])


def test_gradients_of_another_dtype_are_refused_like_torch():
    m = GRU(2, 3)
    out, _ = m(np.ones((2, 1, 2), np.float32))
    for bad in (np.ones(out.shape), np.ones(out.shape, np.int64)):
        with pytest.raises(TypeError, match="Mismatch in dtype"):
            m.backward(bad)
    assert m.grads == {} and m.last_call is not None          # nothing changed
    m.backward(np.ones(out.shape, np.float32))


def _safetensors(path, header, data=b""):
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


@pytest.mark.parametrize("header, message", [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, "gap or overlap"),
    ({"a": {"dtype": "F32", "shape": [12.7], "data_offsets": [0, 8]}}, "malformed"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, "gap or overlap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, "the file holds 12"),
])
def test_safetensors_refused_as_the_reference_refuses(tmp_path, header, message):
    path = _safetensors(tmp_path / "f.safetensors", header, bytes(12))
    with pytest.raises(ValueError, match=message):
        rnnlab.io.load_safetensors(path)
    safetensors = pytest.importorskip("safetensors.numpy")
    with pytest.raises(Exception):                             # the reference agrees
        safetensors.load_file(str(path))


@pytest.mark.parametrize("case", ["B rows", "int W"])
def test_onnx_weights_must_fit_exactly(tmp_path, case):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    W = np.ones((1, 6, 3), np.int32 if case == "int W" else np.float32)
    B = np.ones((1, 14 if case == "B rows" else 12), np.float32)
    inits = [numpy_helper.from_array(W, "W"),
             numpy_helper.from_array(np.ones((1, 6, 2), np.float32), "R"),
             numpy_helper.from_array(B, "B")]
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y"], hidden_size=2,
                            linear_before_reset=1)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(
        "X", TensorProto.FLOAT, [5, 1, 3])], [helper.make_tensor_value_info(
            "Y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph), str(tmp_path / "g.onnx"))
    with pytest.raises(ValueError, match="g.onnx: GRU node 0: " + (
            r".*B \(1, 14\) do not fit" if case == "B rows" else "W must be a 3-D float")):
        rnnlab.import_onnx(tmp_path / "g.onnx")


def test_overflowing_products_are_documented_not_matched():
    """Where a product overflows inside the matmul (1e20 * 1e300 - 1e20 * 1e300), torch's
    kernel gives NaN and OpenBLAS's inf or a finite value: rnnlab says so under its
    guarantees rather than paying a check on every product. The example is run here, so
    the sentence stays true."""
    import pathlib
    torch = pytest.importorskip("torch")
    m = rnnlab.RNN(2, 1, bias=False, dtype=np.float64).eval()
    m.load_state_dict({"weight_ih_l0": np.array([[1e20, -1e20]]),
                       "weight_hh_l0": np.zeros((1, 1))})
    x = np.full((1, 1, 2), 1e300)
    ours = m(x)[0]
    tm = torch.nn.RNN(2, 1, bias=False).double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in m.state_dict().items()})
    theirs = tm(torch.from_numpy(x))[0].detach().numpy()
    text = (pathlib.Path(__file__).parent.parent / "docs" / "semantics.md").read_text()
    if not np.array_equal(np.isnan(ours), np.isnan(theirs)):
        assert "overflow inside a matrix product" in text.lower()
