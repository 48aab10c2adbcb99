"""Argument checks shared by every layer of the house (bottom of the import graph).

Each raises TypeError (wrong kind of thing) or ValueError / ShapeError (right kind, wrong
value) naming the argument, what was expected and what came; none warns.
"""
import numbers

import numpy as np

from .errors import DTypeError, ShapeError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def to_numpy(value, name="input"):
    """A NumPy view of an array-like. torch tensors (anything with .detach().cpu().numpy())
    convert without importing torch; dtypes NumPy cannot hold (bfloat16) are a TypeError."""
    if type(value) is np.ndarray and value.dtype.kind == "f":     # the common call, as is
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        try:
            value = value.detach().cpu().numpy()
        except (TypeError, RuntimeError) as exc:
            raise TypeError(f"{name}: cannot convert the tensor ({getattr(value, 'dtype', '?')}) "
                            f"to a NumPy array: {exc}; convert it to float32 or float64 "
                            "first") from None
    if value is None or isinstance(value, (str, bytes, dict)):
        raise TypeError(f"{name} must be an array, got {type(value).__name__}")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name} must be an array (a ragged or mixed nesting cannot be one): "
                        f"{exc}") from None
    if arr.dtype.kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    return arr


def _native(arr):
    """arr in the machine's byte order (big-endian data is the same numbers)."""
    if arr.dtype.byteorder not in ("=", "|") and not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _got(value, arr):
    """How to name what came: an array's dtype, or what NumPy made of a list / scalar."""
    if isinstance(value, np.ndarray) or hasattr(value, "detach"):
        return f"type {arr.dtype.name}"
    return f"a {type(value).__name__}, which NumPy reads as {arr.dtype.name}"


def float_array(value, dtype, name="input"):
    """A real float array of exactly ``dtype`` (torch's rule: no silent casting; the byte
    order is not a type and is converted)."""
    arr = _native(to_numpy(value, name))
    if arr.dtype != dtype:
        dt = np.dtype(dtype).name
        hint = f"convert it: {name}.astype(np.{dt})" if isinstance(value, np.ndarray) else \
            f"convert it: np.asarray({name}, np.{dt})"
        if arr.dtype in FLOAT_DTYPES and isinstance(value, np.ndarray):
            call = "double" if arr.dtype == np.float64 else "float"
            hint += (f", or use a {arr.dtype.name} module: construct it with "
                     f"dtype=np.{arr.dtype.name} or call .{call}()")
        raise DTypeError(f"{name} must have the type {dt}, got {_got(value, arr)}; {hint}")
    return arr


def gradient_array(value, shape, dtype, name, cast=False):
    """An upstream gradient of ``shape``: an array of the output's ``dtype`` (torch's
    "Mismatch in dtype" otherwise), or a list / scalar, which is read in that dtype. With
    cast=True (dropout masks) any real array is cast (values out of float32's range
    become inf, as torch's copy does; no warning)."""
    arr = to_numpy(value, name)
    if arr.shape != tuple(shape):
        raise ShapeError(f"{name} must have the shape {tuple(shape)}, got {arr.shape}")
    given = isinstance(value, np.ndarray) or hasattr(value, "detach")
    if given and not cast and _native(arr).dtype != dtype:
        raise DTypeError(f"Mismatch in dtype: {name} has the type {arr.dtype.name} and the "
                         f"output it belongs to {np.dtype(dtype).name}; convert it: "
                         f"{name}.astype(np.{np.dtype(dtype).name})")
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(dtype, copy=False)


def check_int(name, value, minimum=1):
    """torch's constructor checks: TypeError for a non-int, ValueError below minimum."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be greater than zero" if minimum == 1
                         else f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_real(name, value):
    """A number-valued setting (a learning rate, a norm) as a Python float: an int or a
    float, Python's or NumPy's (a 0-d array too). TypeError for anything else (bool, str,
    complex, None, arrays with dimensions), naming the setting. NaN and inf pass: the
    caller decides."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        what = (f"an array of shape {value.shape}" if isinstance(value, np.ndarray)
                else type(value).__name__)
        raise TypeError(f"{name} must be a real number, got {what}")
    return float(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return bool(value)


def check_dropout(value):
    if (not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_))
            or not 0 <= value <= 1):
        raise ValueError("dropout should be a number in range [0, 1] representing the "
                         f"probability of an element being zeroed, got {value!r}")
    return float(value)


def resolve_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt.name}")
    return dt
