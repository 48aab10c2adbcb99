"""The safetensors file format, read and written with NumPy alone.

A file is: 8 bytes (little-endian uint64) giving the length n of a JSON header, the n
bytes of that header, then the tensors' bytes. The header maps each tensor name to
{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]} (offsets into the data
that follows the header) and may hold "__metadata__": {str: str}. Little-endian, C order,
no code is ever executed on reading. The ``safetensors`` package reads what this writes
and the other way round (tests/test_io.py checks both).
"""
import json
import struct

import numpy as np

from ..checks import to_numpy
from .atomic import replacing
from .limits import elements

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
_CODES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100_000_000


def save_safetensors(tensors, path, metadata=None):
    """Write {name: array} (and string metadata) to ``path``, atomically."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__":
            raise ValueError(f"tensor names must be strings other than __metadata__, got {name!r}")
        arr = to_numpy(tensors[name], name)
        code = _CODES.get(arr.dtype)
        if code is None:
            raise TypeError(f"{name}: dtype {arr.dtype} has no safetensors code")
        data = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)                        # align the data to 8 bytes
    with replacing(path) as tmp, open(tmp, "wb") as f:   # atomic: old or new, never half
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for c in chunks:
            f.write(c)


def load_safetensors(path):
    """Read ``path`` -> ({name: array}, metadata dict). Anything malformed is a
    ValueError naming the file and what is wrong: as the reference implementation, the
    tensors' offsets must tile the data exactly (no gap, no overlap) and shapes are lists
    of integers."""
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: not a safetensors file (shorter than its 8-byte header size)")
    (n,) = struct.unpack("<Q", blob[:8])
    if n > min(_MAX_HEADER, len(blob) - 8):
        raise ValueError(f"{path}: not a safetensors file (header size {n} does not fit the "
                         f"{len(blob)}-byte file)")
    try:
        header = json.loads(blob[8:8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: not a safetensors file (bad JSON header: "
                         f"{type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: not a safetensors file (header is not a JSON object)")
    data = memoryview(blob)[8 + n:]
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError(f"{path}: __metadata__ must map strings to strings")
    entries = []
    for name, info in header.items():
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]]).newbyteorder("<")
            shape = tuple(info["shape"])
            begin, end = info["data_offsets"]
            if not all(type(v) is int for v in shape + (begin, end)):
                raise TypeError
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}: tensor {name!r} has a malformed entry "
                             f"{str(info)[:100]}") from None
        count = elements(shape, path, f"tensor {name!r}")
        if not 0 <= begin <= end or end - begin != dtype.itemsize * count:
            raise ValueError(f"{path}: tensor {name!r}: shape {shape} and offsets "
                             f"{[begin, end]} do not fit each other")
        entries.append((begin, end, name, dtype, shape))
    entries.sort()
    at = 0
    for begin, end, name, _, _ in entries:          # the tensors tile the data exactly
        if begin != at:
            raise ValueError(f"{path}: tensor {name!r} starts at byte {begin} of the data, "
                             f"expected {at} (gap or overlap)")
        at = end
    if at != len(data):
        raise ValueError(f"{path}: the tensors cover {at} bytes of data, the file holds "
                         f"{len(data)}")
    tensors = {}
    for begin, end, name, dtype, shape in entries:
        tensors[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(shape) \
            .astype(dtype.newbyteorder("="))
    return {name: tensors[name] for name in header}, metadata
