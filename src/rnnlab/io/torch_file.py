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

Reading costs at most what rnnlab.io.limits allows: storages are read only as far as their
tensors need and checked against the archive's declared sizes first, every array made is
counted against the file's budget (an expanded, stride-0 tensor too), and the structure is
walked once per object (shared containers stay shared) to a bounded depth and count.
"""
import collections
import io
import pickle
import zipfile
import zlib

import numpy as np

from . import limits
from .limits import Budget
from .torch_script import ScriptObject, flatten, script_class

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


class _Storage:
    """One storage's elements (``flat``, 1-D), or, in a legacy file before its bytes are
    read, its description (``flat`` None)."""

    def __init__(self, key, dtype, numel, flat=None):
        self.key, self.dtype, self.numel, self.flat = key, dtype, numel, flat


class _Lazy:
    """A tensor of a legacy file, rebuilt once its storage's bytes are read."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.args = storage, (offset, size, stride)


def _ints(value, what):
    """A tuple of non-negative Python ints, or ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise ValueError(f"a tensor's {what} must be non-negative integers, got {value!r:.80}")
    return tuple(value)


def _make_rebuild(budget):
    def rebuild(storage, offset, size, stride, *_ignored):
        """torch._utils._rebuild_tensor_v2 with NumPy: a strided view, copied (its bytes
        counted against the file's budget)."""
        if not isinstance(storage, _Storage):
            raise ValueError(f"a tensor's storage must be a storage, got "
                             f"{type(storage).__name__}")
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError(f"a tensor's offset must be a non-negative integer, got "
                             f"{offset!r:.40}")
        size, stride = _ints(size, "size"), _ints(stride, "stride")
        if len(size) != len(stride):
            raise ValueError(f"a tensor's size {size} and stride {stride} differ in length")
        if storage.flat is None:                        # legacy: bytes come later
            return _Lazy(storage, offset, size, stride)
        return _tensor(storage.flat, offset, size, stride, budget)
    return rebuild


def _tensor(flat, offset, size, stride, budget):
    n = limits.elements(size, budget.path, "a tensor")
    if n == 0:
        return np.zeros(size, dtype=flat.dtype)
    last = offset + sum((k - 1) * s for k, s in zip(size, stride))
    if last >= flat.size:
        raise ValueError(f"a tensor (offset {offset}, size {size}, stride {stride}) reaches "
                         f"past its storage of {flat.size} elements")
    budget.take(n * flat.itemsize, f"a tensor of shape {size}")
    view = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                           strides=tuple(s * flat.itemsize for s in stride))
    return np.array(view, copy=True)


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *_):
    return data


def _as_list(values, *_):
    return list(values) if isinstance(values, (list, tuple)) else values


def _first(value, *_):
    return value


def _allowed(budget):
    """The only callables a checkpoint may name: (module, name) -> rnnlab's own code."""
    rebuild = _make_rebuild(budget)
    out = {("collections", "OrderedDict"): collections.OrderedDict,
           ("torch._utils", "_rebuild_tensor_v2"): rebuild,
           ("torch._utils", "_rebuild_tensor"): rebuild,
           ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
           ("torch.jit._pickle", "restore_type_tag"): _first}    # TorchScript archives
    for kind in ("tensor", "int", "double", "bool"):
        out[("torch.jit._pickle", f"build_{kind}list")] = _as_list
    return out


class _Unpickler(pickle.Unpickler):
    """Resolves only OrderedDict, torch's rebuild functions and storage classes; reads
    each storage (as far as its elements) when the pickle first names it."""

    def __init__(self, data, archive, prefix, budget):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.budget, self.storages = archive, prefix, budget, {}
        self.allowed = _allowed(budget)

    def find_class(self, module, name):
        if module == "__torch__" or module.startswith("__torch__."):
            return script_class(module, name)
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if (module, name) in self.allowed:
            return self.allowed[(module, name)]
        raise UnsafeCheckpointError(
            f"the file asks for {module}.{name}, which load_torch does not allow (only "
            "tensors, dicts, lists, tuples, numbers, strings and None are read; nothing "
            "from the file is executed)")

    def _described(self, pid, length):
        if not isinstance(pid, tuple) or len(pid) < length or pid[0] != "storage" or \
                not isinstance(pid[1], _StorageType):
            raise UnsafeCheckpointError(f"unknown persistent id {pid!r:.80}")
        stype, key, numel = pid[1], str(pid[2]), _ints(pid[4], "storage size")[0]
        if stype.dtype == "bfloat16":
            raise UnsafeCheckpointError("bfloat16 tensors have no NumPy dtype; convert them "
                                        "to float32 before torch.save")
        return np.dtype(stype.dtype).newbyteorder("<"), key, numel

    def persistent_load(self, pid):
        dt, key, numel = self._described(pid, 5)
        if key not in self.storages:
            name = f"{self.prefix}data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise ValueError(f"storage {key} is missing from the archive") from None
            need = numel * dt.itemsize
            limits.check_member(self.budget.path, info, need)
            self.budget.take(need, f"storage {key}")
            with self.archive.open(info) as f:          # only what the tensors use
                raw = f.read(need)
            if len(raw) < need:
                raise ValueError(f"storage {key} has {len(raw)} bytes, needs {need}")
            flat = np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="))
            self.storages[key] = _Storage(key, dt, numel, flat)
        return self.storages[key]


_MAGIC = 0x1950A86A20F9469CFC6C


class _LegacyUnpickler(_Unpickler):
    """The legacy format: storages are read after the object pickle."""

    def __init__(self, stream, budget):
        pickle.Unpickler.__init__(self, stream)
        self.budget, self.storages = budget, {}
        self.allowed = _allowed(budget)

    def persistent_load(self, pid):
        dt, key, numel = self._described(pid, 6)
        if pid[5] is not None:
            raise UnsafeCheckpointError("storage views of the legacy format are not read")
        return self.storages.setdefault(key, _Storage(key, dt, numel))


def _load_legacy(path, data, budget):
    stream = io.BytesIO(data)
    u = _LegacyUnpickler(stream, budget)
    if u.load() != _MAGIC:
        raise ValueError("neither a torch.save zip file nor its legacy format")
    u.load()                                          # protocol version
    info = u.load()
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise ValueError("big-endian checkpoints are not supported")
    obj = u.load()
    keys = u.load()
    if not isinstance(keys, list):
        raise ValueError("the storage key list is missing")
    for key in keys:
        st = u.storages.get(str(key))
        head = stream.read(8)
        if st is None or len(head) != 8:
            raise ValueError(f"storage {key} is not described or is truncated")
        count = int.from_bytes(head, "little", signed=True)
        if count < st.numel or count * st.dtype.itemsize > len(data) - stream.tell():
            raise ValueError(f"storage {key} is truncated")
        raw = stream.read(count * st.dtype.itemsize)
        st.flat = np.frombuffer(raw, dtype=st.dtype).astype(st.dtype.newbyteorder("="))
    return obj


def _walk(obj, budget):
    """The saved structure with OrderedDicts as dicts (key order kept) and legacy tensors
    rebuilt, each object converted once (shared containers stay shared, as the pickle
    made them). Refused when it nests deeper than limits.MAX_DEPTH or holds more than
    limits.MAX_ITEMS items counted as a tree would (a container shared through the
    pickle's memo counts at every place it stands: a few hundred bytes of pickle can
    describe 2**40 of them)."""
    done, items = {}, {}

    def tree_size(o, depth):
        if not isinstance(o, (dict, list, tuple)):
            return 1
        if id(o) not in items:
            if depth > limits.MAX_DEPTH:
                raise limits.LimitError(f"{budget.path}: the saved structure nests deeper "
                                        f"than {limits.MAX_DEPTH} (rnnlab.io.limits)")
            items[id(o)] = 0                         # a cycle counts its first visit
            parts = list(o.items()) if isinstance(o, dict) else [(None, v) for v in o]
            n = 1 + sum(tree_size(k, depth + 1) + tree_size(v, depth + 1) for k, v in parts)
            items[id(o)] = n
        if items[id(o)] > limits.MAX_ITEMS:
            raise limits.LimitError(f"{budget.path}: the saved structure holds more than "
                                    f"{limits.MAX_ITEMS:,} items (counting shared ones at "
                                    "every place they stand; rnnlab.io.limits)")
        return items[id(o)]

    def go(o):
        if isinstance(o, _Lazy):
            if o.storage.flat is None:
                raise ValueError(f"storage {o.storage.key} has no data")
            return _tensor(o.storage.flat, *o.args, budget)
        if isinstance(o, (_Storage, _StorageType)):
            raise ValueError("a bare storage where a tensor or a value was expected")
        if isinstance(o, (set, frozenset)):
            if any(isinstance(v, (_Lazy, _Storage, _StorageType, dict, list, tuple))
                   for v in o):
                raise ValueError("a set holding tensors or containers")
            return o
        if not isinstance(o, (dict, list, tuple)):
            return o
        if id(o) in done:
            return done[id(o)][1]
        if isinstance(o, dict):
            out = {}
            done[id(o)] = (o, out)
            for k, v in o.items():
                key = go(k)
                try:
                    out[key] = go(v)
                except TypeError:
                    raise ValueError("a tensor is used as a dict key") from None
            return out
        if isinstance(o, list):
            out = []
            done[id(o)] = (o, out)
            out.extend(go(v) for v in o)
            return out
        out = tuple(go(v) for v in o)
        done[id(o)] = (o, out)
        return out
    tree_size(obj, 0)
    return go(obj)


def load_torch(path):
    """Read a file written by ``torch.save`` (zip or legacy format) with NumPy alone: the
    saved structure with every tensor as a NumPy array (dicts, OrderedDicts, lists, tuples,
    numbers, strings and None as they were). Anything else in the file is refused with
    UnsafeCheckpointError (a ValueError) naming it; no code from the file runs. A damaged
    or hostile file is a ValueError naming the file (rnnlab.io.limits: what reading may
    cost)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
        if head[:2] == b"PK":
            with zipfile.ZipFile(path) as archive:
                return _load_zip(archive, path)
        with open(path, "rb") as f:
            data = f.read()
        budget = Budget(path, len(data))
        return _walk(_load_legacy(path, data, budget), budget)
    except (UnsafeCheckpointError, limits.LimitError) as exc:
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    except OSError as exc:
        if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise ValueError(f"{path}: damaged archive ({exc})") from None
    except (ValueError, TypeError, pickle.UnpicklingError, EOFError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError, RecursionError, zlib.error,
            zipfile.BadZipFile, NotImplementedError, UnicodeDecodeError, StopIteration) \
            as exc:
        text = str(exc)[:300]
        if str(path) in text:
            raise ValueError(text) from None
        raise ValueError(f"{path}: not a readable torch.save file ({type(exc).__name__}: "
                         f"{text})") from None


def _load_zip(archive, path):
    infos = archive.infolist()
    held = 0
    for info in infos:
        limits.check_member(path, info)
        held += info.file_size
    pkl = [i for i in infos if i.filename.endswith("data.pkl")]
    if len(pkl) != 1:
        raise ValueError(f"expected one data.pkl in the archive, found {len(pkl)}")
    prefix = pkl[0].filename[:-len("data.pkl")]
    names = {i.filename for i in infos}
    if prefix + "byteorder" in names:
        order = archive.read(prefix + "byteorder")[:16].decode("ascii", "replace").strip()
        if order != "little":
            raise ValueError("big-endian checkpoints are not supported")
    budget = Budget(path, held)
    budget.take(pkl[0].file_size, "the pickle")
    obj = _Unpickler(archive.read(pkl[0]), archive, prefix, budget).load()
    if isinstance(obj, ScriptObject):                # a torch.jit.save archive
        obj = flatten(obj, budget, (_Lazy, np.ndarray))
    return _walk(obj, budget)
