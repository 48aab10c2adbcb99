"""What every rnnlab module shares: parameters by torch name, gradients, state_dict,
train/eval, dtype, and the conversion and checking of arrays users pass in."""
from collections import namedtuple
import contextlib
import numbers

import numpy as np

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


_RECORDING = [True]


@contextlib.contextmanager
def no_grad():
    """Inside ``with rnnlab.no_grad():`` cells and layer.step keep no record for backward,
    so long inference loops do not accumulate memory (like torch.no_grad)."""
    _RECORDING.append(False)
    try:
        yield
    finally:
        _RECORDING.pop()


def recording():
    return _RECORDING[-1]


class ShapeError(ValueError, RuntimeError):
    """Bad shape or size. A ValueError, and a RuntimeError like torch's, so code written
    for either keeps working."""


class BackwardError(ValueError, RuntimeError):
    """backward called without a matching forward, or with gradients of the wrong shape."""


class StateDictError(ValueError, RuntimeError):
    """load_state_dict found missing/unexpected keys or shape mismatches (all listed)."""


def to_numpy(value):
    """A numpy view of an array-like; torch tensors (anything with .detach().cpu().numpy())
    are converted without importing torch."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def as_input(value, dtype, name="input"):
    """Convert and check a user array against the module's dtype (torch's dtype rule:
    no silent casting)."""
    arr = to_numpy(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.dtype != dtype:
        raise ValueError(
            f"{name} must have the type {np.dtype(dtype).name}, got type {arr.dtype.name}. "
            f"Convert the {name}: x.astype(np.{np.dtype(dtype).name}), or the module: "
            f".to(np.{arr.dtype.name})")
    return arr


def resolve_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"dtype must be float32 or float64, got {dt.name}")
    return dt


def check_int(name, value, minimum=1):
    """torch's constructor checks: TypeError for a non-int, ValueError below minimum."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be greater than zero" if minimum == 1
                         else f"{name} must be at least {minimum}, got {value}")
    return int(value)


def check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return bool(value)


class Module:
    """Parameters in torch's registration order, their gradients in ``grads``."""

    def __init__(self, dtype, seed):
        self._parameters = {}
        self.grads = {}
        self.training = True
        self.dtype = resolve_dtype(dtype)
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    # -- parameters ---------------------------------------------------------------
    def _init_parameters(self, shapes, hidden_size):
        """Register ``shapes`` (name -> shape) and draw each from U(-1/sqrt(H), 1/sqrt(H))
        in that order, like torch's reset_parameters."""
        k = 1.0 / np.sqrt(hidden_size)
        for name, shape in shapes.items():
            self._parameters[name] = self._rng.uniform(-k, k, size=shape).astype(self.dtype)
            self.grads[name] = np.zeros(shape, dtype=self.dtype)

    def __getattr__(self, name):
        params = self.__dict__.get("_parameters", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters", {})
        if name in params:                   # gru.weight_ih_l0 = array: copy into the live one
            arr = to_numpy(value)
            if arr.shape != params[name].shape:
                raise ShapeError(f"{name}: expected shape {params[name].shape}, got {arr.shape}")
            params[name][...] = arr
            return
        object.__setattr__(self, name, value)

    def named_parameters(self):
        """(name, array) pairs in torch's order; the arrays are the live parameters."""
        return iter(list(self._parameters.items()))

    def parameters(self):
        return list(self._parameters.values())

    def zero_grad(self):
        for g in self.grads.values():
            g[...] = 0

    def state_dict(self):
        """Copies of the parameters by torch name (loadable into torch after torch.from_numpy)."""
        return {name: p.copy() for name, p in self._parameters.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load numpy arrays or torch tensors by torch name. Every problem (missing or
        unexpected keys when strict, shape mismatches always) is reported in one error and
        nothing is changed. Returns (missing_keys, unexpected_keys) like torch."""
        expected = self._parameters
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        problems, new = [], {}
        for name in expected:
            if name not in state_dict:
                continue
            try:
                arr = to_numpy(state_dict[name])
            except Exception as exc:                          # pragma: no cover - exotic input
                problems.append(f"{name}: cannot convert to an array ({exc})")
                continue
            if arr.dtype.kind not in "fiub":
                problems.append(f"{name}: expected a numeric array, got dtype {arr.dtype}")
            elif arr.shape != expected[name].shape:
                problems.append(f"size mismatch for {name}: expected shape "
                                f"{expected[name].shape}, got {arr.shape}")
            else:
                new[name] = np.array(arr, dtype=self.dtype, copy=True)
        if strict and missing:
            problems.insert(0, "missing key(s): " + ", ".join(missing))
        if strict and unexpected:
            problems.insert(1 if strict and missing else 0,
                            "unexpected key(s): " + ", ".join(map(str, unexpected)))
        if problems:
            raise StateDictError(f"Error(s) in loading state_dict for {type(self).__name__} "
                                 "(nothing was changed):\n\t" + "\n\t".join(problems))
        for name, arr in new.items():
            self._parameters[name][...] = arr                 # in place: references stay valid
        return IncompatibleKeys(missing, unexpected)

    # -- modes and dtype ------------------------------------------------------------
    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert parameters and gradients to float32 or float64 (in place, returns self)."""
        self.dtype = resolve_dtype(dtype)
        for store in (self._parameters, self.grads):
            for name in store:
                store[name] = store[name].astype(self.dtype)
        self._clear_cache()
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    _RECORDS = ()          # per-call records and buffers: rebuilt by _clear_cache, never pickled

    def _clear_cache(self):
        pass

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in self._RECORDS}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._clear_cache()

    def _upstream(self, grad, shape, label, what="shape"):
        """A user's upstream gradient: None stays None; else an array of ``shape`` in the
        module's dtype, or BackwardError saying what was expected."""
        if grad is None:
            return None
        g = to_numpy(grad)
        if g.shape != tuple(shape):
            raise BackwardError(f"{label} must have {what} {tuple(shape)}, got {g.shape}")
        return g.astype(self.dtype, copy=False)

    def _add_grads(self, names, values):
        for name, value in zip(names, values):
            if name is not None and value is not None:
                self.grads[name] += value
