"""Reading torch.save files without torch, and without running code from them.

A file written by torch.save (the zip format, torch >= 1.6) is a zip archive holding
``<name>/data.pkl`` (a pickle of the saved structure), ``<name>/data/<key>`` (the raw bytes
of each storage) and ``<name>/byteorder``. A pickle can name any importable callable and
call it on load; ``load_torch`` therefore uses an unpickler that resolves only a fixed list
of names — OrderedDict, torch's tensor-rebuild functions and storage classes — to rnnlab's
own NumPy implementations, and refuses anything else with an error naming it. No torch
code is imported or executed. The legacy format (``_use_new_zipfile_serialization=False``:
magic number, protocol and sys-info pickles, the object pickle, the storage keys, then each
storage as an int64 element count and its bytes) is read the same way; the tar format of
torch < 0.4 is not.
"""
import collections
import io
import pickle
import zipfile
import zlib

import numpy as np

_STORAGES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "BFloat16Storage": "bfloat16",
}


class UnsafeCheckpointError(ValueError):
    """The file asks for something other than tensors, dicts, lists and plain values."""


class _StorageType:
    def __init__(self, name):
        self.name = name
        self.dtype = _STORAGES[name]


class _Lazy:
    """A tensor of a legacy file, rebuilt once its storage's bytes are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.args = storage, (offset, size, stride)


def _rebuild_tensor(storage, offset, size, stride, *_ignored):
    """torch._utils._rebuild_tensor_v2 with NumPy: a strided view, copied."""
    if isinstance(storage, dict):                       # legacy: bytes come later
        return _Lazy(storage, offset, size, stride)
    flat, itemsize = storage
    if any(s < 0 for s in size) or any(s < 0 for s in stride):
        raise ValueError(f"tensor with negative size/stride {size}/{stride}")
    if int(np.prod(size)) == 0:
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= flat.size:
        raise ValueError(f"tensor (offset {offset}, size {size}, stride {stride}) reaches "
                         f"past its storage of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view, copy=True)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *_):
    return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data, archive, prefix):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.storages = archive, prefix, {}

    def find_class(self, module, name):
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise UnsafeCheckpointError(
            f"the file asks for {module}.{name}, which load_torch does not allow (only "
            "tensors, dicts, lists, tuples, numbers, strings and None are read; nothing "
            "from the file is executed)")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage" or \
                not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"unknown persistent id {pid!r:.80}")
        stype, key, numel = pid[1], str(pid[2]), int(pid[4])
        if stype.dtype == "bfloat16":
            raise UnsafeCheckpointError("bfloat16 tensors have no NumPy dtype; convert them "
                                        "to float32 before torch.save")
        if key not in self.storages:
            try:
                raw = self.archive.read(f"{self.prefix}data/{key}")
            except KeyError:
                raise ValueError(f"storage {key} is missing from the archive") from None
            dt = np.dtype(stype.dtype).newbyteorder("<")
            if len(raw) < numel * dt.itemsize:
                raise ValueError(f"storage {key} has {len(raw)} bytes, needs "
                                 f"{numel * dt.itemsize}")
            flat = np.frombuffer(raw, dtype=dt, count=numel).astype(dt.newbyteorder("="))
            self.storages[key] = (flat, flat.itemsize)
        return self.storages[key]


_MAGIC = 0x1950A86A20F9469CFC6C


class _LegacyUnpickler(_Unpickler):
    """The legacy format: storages are read after the object pickle."""

    def __init__(self, stream):
        pickle.Unpickler.__init__(self, stream)
        self.storages = {}

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage" or \
                not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"unknown persistent id {pid!r:.80}")
        stype, key, numel, view = pid[1], str(pid[2]), int(pid[4]), pid[5]
        if stype.dtype == "bfloat16":
            raise UnsafeCheckpointError("bfloat16 tensors have no NumPy dtype; convert them "
                                        "to float32 before torch.save")
        if view is not None:
            raise UnsafeCheckpointError("storage views of the legacy format are not read")
        return self.storages.setdefault(key, {"key": key, "dtype": stype.dtype,
                                              "numel": numel})


def _load_legacy(path):
    with open(path, "rb") as f:
        stream = io.BytesIO(f.read())
    try:
        u = _LegacyUnpickler(stream)
        if u.load() != _MAGIC:
            raise ValueError(f"{path}: neither a torch.save zip file nor its legacy format")
        u.load()                                          # protocol version
        info = u.load()
        if isinstance(info, dict) and info.get("little_endian") is False:
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        obj = u.load()
        keys = u.load()
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, IndexError, KeyError,
            MemoryError, OverflowError, RecursionError) as exc:   # damaged opcodes, lengths
        raise ValueError(f"{path}: neither a torch.save zip file nor a readable legacy file "
                         f"({type(exc).__name__}: {exc})") from None
    if not isinstance(keys, list):
        raise ValueError(f"{path}: the storage key list is missing")
    size = len(stream.getbuffer())
    for key in keys:
        meta = u.storages.get(str(key))
        head = stream.read(8)
        if meta is None or len(head) != 8:
            raise ValueError(f"{path}: storage {key} is not described or is truncated")
        count = int.from_bytes(head, "little", signed=True)
        dt = np.dtype(meta["dtype"]).newbyteorder("<")
        if count < meta["numel"] or count * dt.itemsize > size - stream.tell():
            raise ValueError(f"{path}: storage {key} is truncated")
        raw = stream.read(count * dt.itemsize)
        flat = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
        meta["data"] = (flat, flat.itemsize)
    return _materialise(obj, path)


def _materialise(obj, path):
    if isinstance(obj, _Lazy):
        if "data" not in obj.storage:
            raise ValueError(f"{path}: storage {obj.storage['key']} has no data")
        return _rebuild_tensor(obj.storage["data"], *obj.args)
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v, path)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, path) for v in obj)
    return obj


def load_torch(path):
    """Read a file written by ``torch.save`` (zip or legacy format) with NumPy alone: the
    saved structure with every tensor as a NumPy array (dicts, OrderedDicts, lists, tuples,
    numbers, strings and None as they were). Anything else in the file is refused with
    UnsafeCheckpointError (a ValueError) naming it; no code from the file runs."""
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        return _load_legacy(path)
    except (NotImplementedError, EOFError, zlib.error) as exc:  # a damaged zip header
        raise ValueError(f"{path}: damaged zip archive ({exc})") from None
    try:
        return _load_zip(archive, path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as exc:
        raise ValueError(f"{path}: damaged zip archive ({exc})") from None


def _load_zip(archive, path):
    with archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise ValueError(f"{path}: expected one data.pkl in the archive, found {len(pkl)}")
        prefix = pkl[0][:-len("data.pkl")]
        order = archive.read(prefix + "byteorder").decode().strip() \
            if prefix + "byteorder" in archive.namelist() else "little"
        if order != "little":
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        try:
            obj = _Unpickler(archive.read(pkl[0]), archive, prefix).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
            raise ValueError(f"{path}: cannot read the pickle ({exc})") from None
    return _plain(obj)


def _plain(obj):
    """OrderedDicts become dicts (key order kept); everything else as it is."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_plain(v) for v in obj)
    return obj
