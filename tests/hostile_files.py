"""Small files built to cost a reader gigabytes, time or its stack (tests/test_hostile.py
reads each under a memory cap). Every builder writes one file into ``d`` and returns
(path, the reader to call: "torch" | "load" | "onnx" | "convert")."""
import io
import json
import pickle
import struct
import zipfile

import numpy as np

from rnnlab.io.safetensors import save_safetensors


def _torch_zip(path, pkl, storages=(), compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, raw in storages:
            z.writestr(f"archive/data/{key}", raw)
    return path


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride)


class _Store:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


def _dumps(obj):
    """Pickle ``obj`` the way torch.save does: _Tensor as torch._utils._rebuild_tensor_v2
    over a persistent storage id naming torch.FloatStorage (no torch needed)."""
    import sys
    import types
    fake = {name: types.ModuleType(name) for name in ("torch", "torch._utils")}

    def _rebuild_tensor_v2(*args):
        return None
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    fake["torch._utils"]._rebuild_tensor_v2 = _rebuild_tensor_v2
    storage = type("FloatStorage", (), {"__module__": "torch", "__qualname__": "FloatStorage"})
    fake["torch"].FloatStorage = storage

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _Store):
                return ("storage", storage, o.key, "cpu", o.numel)
            return None

        def reducer_override(self, o):
            if isinstance(o, _Tensor):
                return _rebuild_tensor_v2, o.args + (False, {})
            return NotImplemented
    saved = {name: sys.modules.get(name) for name in fake}
    sys.modules.update(fake)
    try:
        buf = io.BytesIO()
        Pickler(buf, protocol=2).dump(obj)
        return buf.getvalue()
    finally:
        for name, mod in saved.items():
            if mod is None:
                del sys.modules[name]
            else:
                sys.modules[name] = mod


def laughs(d):
    """Lists sharing each other through the pickle's memo: 532 bytes, 2**40 items."""
    a = []
    for _ in range(40):
        a = [a, a]
    return _torch_zip(d / "laughs.pt", pickle.dumps(a, protocol=2)), "torch"


def deep(d):
    """100,000 nested lists (a RecursionError for a recursive walk)."""
    body = b"\x80\x02" + b"]" * 100_000 + b"a" * 99_999 + b"."
    return _torch_zip(d / "deep.pt", body), "torch"


class _Repeating:
    """A deflate compressor for a member written as the same chunk again and again: the
    chunk is compressed once, ending on a full flush (which resets the history, so every
    further copy compresses to the same bytes), and those bytes are repeated: 0.05 s
    where deflating 2 GiB took 6 s."""
    def __init__(self, chunk):
        import zlib
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.chunk, self.block = chunk, c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
        self.last = zlib.compressobj(6, zlib.DEFLATED, -15).flush()

    def compress(self, data):
        assert data is self.chunk
        return self.block

    def flush(self):
        return self.last


def inflating_storage(d):
    """A tensor of 4 floats whose storage member inflates to 2 GiB (stored 2 MB)."""
    path = d / "inflate.pt"
    pkl = _dumps({"w": _Tensor(_Store("0", 4), 0, (4,), (1,))})
    chunk = bytes(1 << 24)
    real = getattr(zipfile, "_get_compressor", None)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", pkl)
        if real is not None:                 # zipfile's own compressor, by its private name
            zipfile._get_compressor = lambda *a, **k: _Repeating(chunk)
        try:
            with z.open("archive/data/0", "w", force_zip64=True) as f:
                for _ in range(128):
                    f.write(chunk)
        finally:
            if real is not None:
                zipfile._get_compressor = real
    return path, "torch"


def stride_zero(d):
    """One float expanded to (1000, 1000, 100) by stride 0: 400 MB from 4 bytes."""
    pkl = _dumps({"w": _Tensor(_Store("0", 1), 0, (1000, 1000, 100), (0, 0, 0))})
    return _torch_zip(d / "stride0.pt", pkl, [("0", np.zeros(1, np.float32).tobytes())]), \
        "torch"


def huge_storage(d):
    """A storage said to hold 10**12 floats, 16 bytes on disk."""
    pkl = _dumps({"w": _Tensor(_Store("0", 10 ** 12), 0, (10 ** 12,), (1,))})
    return _torch_zip(d / "huge.pt", pkl, [("0", bytes(16))]), "torch"


def many_views(d):
    """One 1 MB storage viewed whole by 10,000 tensors: 10 GB of copies from 1 MB."""
    store = _Store("0", 1 << 18)
    pkl = _dumps([_Tensor(store, 0, (1 << 18,), (1,)) for _ in range(10_000)])
    return _torch_zip(d / "views.pt", pkl, [("0", bytes(1 << 20))]), "torch"


def dict_storage(d):
    """A dict where a tensor's storage belongs (an AttributeError inside, before)."""
    pkl = _dumps({"w": _Tensor({"not": "a storage"}, 0, (2,), (1,))})
    return _torch_zip(d / "dictstorage.pt", pkl), "torch"


def deep_json(d):
    """A safetensors header nested 100,000 deep."""
    hdr = ("[" * 100_000 + "]" * 100_000).encode()
    hdr += b" " * (-len(hdr) % 8)
    path = d / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr)
    return path, "load"


def skipped_layers(d):
    """weight_ih_l9999999 beside layer 0: ten million layers from 300 bytes."""
    path = d / "layers.safetensors"
    save_safetensors({"weight_ih_l9999999": np.zeros((3, 2), np.float32),
                      "weight_ih_l0": np.zeros((3, 2), np.float32),
                      "weight_hh_l0": np.zeros((3, 1), np.float32)}, path)
    return path, "convert"


def big_config(d):
    """An rnnlab configuration claiming hidden_size 10**6 beside a 96-byte tensor."""
    meta = json.dumps({"format": "rnnlab-module-1", "class": "GRU",
                       "config": {"input_size": 8, "hidden_size": 10 ** 6}})
    path = d / "config.safetensors"
    save_safetensors({"weight_ih_l0": np.zeros((3, 8), np.float32)}, path, {"rnnlab": meta})
    return path, "load"


def list_metadata(d):
    """__metadata__ as a list (an AttributeError inside, before)."""
    hdr = json.dumps({"__metadata__": [1, 2]}).encode()
    hdr += b" " * (-len(hdr) % 8)
    path = d / "listmeta.safetensors"
    path.write_bytes(struct.pack("<Q", len(hdr)) + hdr)
    return path, "load"


def npz_header(d):
    """An .npz member whose header claims 10**12 floats."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": "<f4", "fortran_order": False,
                                              "shape": (10 ** 12,)})
    path = d / "header.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", buf.getvalue())
    return path, "load"


def empty_hidden(d):
    """weight_hh_l0 of shape (0, 0) (a ZeroDivisionError inside, before)."""
    path = d / "empty.safetensors"
    save_safetensors({"weight_ih_l0": np.zeros((0, 3), np.float32),
                      "weight_hh_l0": np.zeros((0, 0), np.float32)}, path)
    return path, "convert"


def _onnx_node(path, op, inits, **attrs):
    """A one-node ONNX graph X -> op(X, W, R) -> Y over ``inits`` ([W, R])."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    node = helper.make_node(op, ["X", "W", "R"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [5, 1, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(a, n) for a, n in zip(inits, ("W", "R"))])
    onnx.save(helper.make_model(graph), str(path))
    return path, "onnx"


def onnx_hidden_size(d):
    """An ONNX GRU whose hidden_size says 10**6 over 2-unit weights."""
    return _onnx_node(d / "hidden.onnx", "GRU", [np.ones((1, 6, 3), np.float32),
                                                 np.ones((1, 6, 2), np.float32)],
                      hidden_size=10 ** 6, linear_before_reset=1)


def onnx_flat_weights(d):
    """An ONNX LSTM whose W is 2-D and R a scalar (an IndexError inside, before)."""
    return _onnx_node(d / "flat.onnx", "LSTM", [np.ones((8, 3), np.float32),
                                                np.array(1.0, np.float32)], hidden_size=2)


BUILDERS = [laughs, deep, inflating_storage, stride_zero, huge_storage, many_views,
            dict_storage, deep_json, skipped_layers, big_config, list_metadata, npz_header,
            empty_hidden, onnx_hidden_size, onnx_flat_weights]
