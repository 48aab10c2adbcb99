"""state_dict / load_state_dict with torch's names: loading is atomic (every problem is
listed in one error and nothing is changed) and accepts NumPy arrays or torch tensors."""
from collections import namedtuple

import numpy as np

from ..checks import to_numpy
from ..errors import StateDictError, StateDictTypeError

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def check_tensors(shapes, tensors, strict=True):
    """Compare ``tensors`` (name -> array-like) with ``shapes`` (name -> shape) without
    copying anything: (missing, unexpected, problems, wrong_kind, arrays), ``problems``
    the messages (missing / unexpected keys only when strict), ``wrong_kind`` whether a
    value is no real array, ``arrays`` the matching ones as NumPy arrays."""
    keys = list(tensors.keys())
    missing = [k for k in shapes if k not in keys]
    unexpected = [k for k in keys if k not in shapes]
    problems, arrays, wrong_kind = [], {}, False
    for name, shape in shapes.items():
        if name not in keys:
            continue
        try:
            arr = to_numpy(tensors[name], name)
        except TypeError as exc:
            problems.append(str(exc))
            wrong_kind = True
            continue
        if arr.shape != tuple(shape):
            problems.append(f"size mismatch for {name}: expected shape {tuple(shape)}, got "
                            f"{arr.shape}")
        else:
            arrays[name] = arr
    if strict and unexpected:
        problems.insert(0, "unexpected key(s): " + ", ".join(map(str, unexpected)))
    if strict and missing:
        problems.insert(0, "missing key(s): " + ", ".join(missing))
    return missing, unexpected, problems, wrong_kind, arrays


class StateDictMixin:
    """For Module: parameters live in ``self._parameters`` (name -> array)."""

    def state_dict(self):
        """Copies of the parameters by torch name (loadable into torch after torch.from_numpy)."""
        return {name: p.copy() for name, p in self._parameters.items()}

    def load_state_dict(self, state_dict, strict=True):
        """Load numpy arrays or torch tensors by torch name. Every problem (missing or
        unexpected keys when strict, shape mismatches always) is reported in one error and
        nothing is changed. Returns (missing_keys, unexpected_keys) like torch. Values
        beyond float32's range become inf in a float32 module, as in torch."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(
                f"load_state_dict expects a mapping of parameter names to arrays (a "
                f"state_dict), got {type(state_dict).__name__}"
                + (f" {state_dict!r}: to read a file, load it first (np.load(path) for .npz; "
                   "torch.load(path) for .pt) and pass the resulting mapping"
                   if isinstance(state_dict, (str, bytes)) or hasattr(state_dict, "__fspath__")
                   else ""))
        missing, unexpected, problems, wrong_kind, arrays = check_tensors(
            {n: p.shape for n, p in self._parameters.items()}, state_dict, strict)
        if problems:
            cls = StateDictTypeError if wrong_kind else StateDictError
            raise cls(f"Error(s) in loading state_dict for {type(self).__name__} "
                      "(nothing was changed):\n\t" + "\n\t".join(problems))
        new = {}
        with np.errstate(over="ignore", invalid="ignore"):
            for name, arr in arrays.items():
                new[name] = np.array(arr, dtype=self.dtype, copy=True)
        for name, arr in new.items():
            self._parameters[name][...] = arr                 # in place: references stay valid
        self._changed()
        return IncompatibleKeys(missing, unexpected)
