"""What every rnnlab module shares: parameters by torch name, gradients, state_dict,
train/eval, dtype, per-thread call records, and fixed configuration.

Gradients follow torch: ``grads[name]`` exists once a backward has produced it, adds up
over backward calls, and ``zero_grad()`` removes the entries (``set_to_none=False``:
zeroes them in place). Configuration attributes given at construction (sizes, layers,
directions, bias, ...) are fixed; ``dropout`` and ``batch_first`` may be changed (checked).
"""
import contextlib
import threading

import numpy as np

from ..checks import check_bool, check_dropout, resolve_dtype, to_numpy
from ..errors import ShapeError
from ..sequence.pool import aligned_copy, aligned_empty, owns_memory
from .records import ThreadRecords
from .state_dict import StateDictMixin

_PLAN = threading.local()
_PLAN.on = False


@contextlib.contextmanager
def planned():
    """Within: modules are built without drawing their parameters (each a read-only view
    of a single zero): their names, shapes and configuration at no memory cost. Readers
    build a file's module this way first and compare its shapes with the file's tensors
    before allocating anything (a configuration can claim any size)."""
    before = getattr(_PLAN, "on", False)
    _PLAN.on = True
    try:
        yield
    finally:
        _PLAN.on = before


def parameter_shapes(cls, **config):
    """{torch name: shape} of ``cls(**config)``, without allocating its parameters."""
    with planned():
        return {name: p.shape for name, p in cls(**config).named_parameters()}


_DERIVED = ("_weights", "_step_weights", "_quick")   # per-instance caches of views of the
#                                                       parameters
_SETTABLE = {"dropout": check_dropout, "batch_first": lambda v: check_bool("batch_first", v)}


class Module(StateDictMixin):
    """Parameters in torch's registration order, their gradients in ``grads``."""

    _FIXED = ()            # configuration attributes that cannot change after construction
    _pooled_grads = False  # backward takes dW from the pool (zero_grad hands them back)

    def __init__(self, dtype, seed, device=None):
        d = self.__dict__
        d["_parameters"] = {}
        d["grads"] = {}
        d["training"] = True
        d["dtype"] = resolve_dtype(dtype)
        d["_rng"] = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        d["_records"] = ThreadRecords()
        d["_lock"] = threading.Lock()
        d["_version"] = 0          # bumped by every rnnlab call that writes the parameters
        self.to(device=device)     # "cpu" (or None) only: checked like torch's device=

    # -- parameters ---------------------------------------------------------------
    def _init_parameters(self, shapes, hidden_size, normal=False):
        """Register ``shapes`` (name -> shape) and draw each from U(-1/sqrt(H), 1/sqrt(H))
        in that order, like torch's reset_parameters (normal=True: from N(0, 1), as torch's
        Embedding); drawn in the module's dtype, so construction peaks at the parameters'
        own size. Inside ``planned()`` nothing is drawn (see there)."""
        k = 1.0 / np.sqrt(hidden_size)
        for name, shape in shapes.items():
            if _PLAN.on:                         # a read-only view of one zero: no memory
                self._parameters[name] = np.broadcast_to(np.zeros((), self.dtype), shape)
                continue
            p = aligned_empty(shape, self.dtype, least=0)     # on a cache line (pool.py)
            if normal:
                self._rng.standard_normal(dtype=self.dtype, out=p)
            else:
                self._rng.random(dtype=self.dtype, out=p)        # U[0, 1) in place
                p *= 2 * k
                p -= k
            self._parameters[name] = p

    def __getattr__(self, name):
        params = self.__dict__.get("_parameters", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name, value):
        params = self.__dict__.get("_parameters", {})
        if name in params:                   # gru.weight_ih_l0 = array: copy into the live one
            arr = to_numpy(value, name)
            if arr.shape != params[name].shape:
                raise ShapeError(f"{name}: expected shape {params[name].shape}, got {arr.shape}")
            with np.errstate(over="ignore", invalid="ignore"):
                params[name][...] = arr
            self._changed()
            return
        if name in self._FIXED and name in self.__dict__:
            raise TypeError(f"{name} is fixed when the module is built ({self.__dict__[name]!r}); "
                            f"build a new {type(self).__name__} with {name}={value!r} and load "
                            "the weights that still fit")
        if name in _SETTABLE and name in self.__dict__:
            value = _SETTABLE[name](value)
        how = {"dtype": ".to(dtype)", "grads": "backward / zero_grad()",
               "training": ".train() / .eval()"}
        if name in how:
            raise TypeError(f"set {name} through {how[name]}")
        object.__setattr__(self, name, value)

    def named_parameters(self):
        """(name, array) pairs in torch's order; the arrays are the live parameters."""
        return iter(list(self._parameters.items()))

    def parameters(self):
        return list(self._parameters.values())

    def _changed(self):
        """Parameters were written through rnnlab (attribute assignment, load_state_dict,
        an optimizer step, .to): snapshots such as ``layer.freeze()`` refresh themselves.
        In-place NumPy writes to the arrays themselves are not seen (nothing can see them)."""
        self.__dict__["_version"] = self.__dict__.get("_version", 0) + 1

    def zero_grad(self, set_to_none=True):
        """Forget the gradients (torch's default), or zero them in place. Forgotten
        arrays that nothing else holds serve this thread's next backward (Pool.reuse),
        in modules whose backward takes its dW from the pool (``_pooled_grads``: the
        recurrent layers; another module's pool would only pile them up)."""
        with self._lock:
            if set_to_none:
                dropped = list(self.grads.values())
                self.grads.clear()
                if self._pooled_grads:
                    self._records.pool.reuse(dropped)
            else:
                for g in self.grads.values():
                    g[...] = 0

    def _add_grads(self, named, adopted=None):
        """Add (name, gradient) pairs into ``grads`` (thread-safe). A first gradient that
        is a fresh array of the module's dtype (one the backward made, owning its memory)
        becomes the entry itself: no copy, so the first backward does not hold the
        gradients twice. Sums past the dtype's range give inf quietly, as torch's.
        ``adopted``: a list that receives the arrays that became entries."""
        with self._lock, np.errstate(over="ignore", invalid="ignore"):
            for name, value in named:
                if name is None or value is None:
                    continue
                g = self.grads.get(name)
                if g is None:
                    owned = (isinstance(value, np.ndarray) and owns_memory(value)
                             and value.dtype == self.dtype and value.flags.writeable)
                    self.grads[name] = value if owned else np.array(value, dtype=self.dtype,
                                                                    copy=True)
                    if owned and adopted is not None:
                        adopted.append(value)
                else:
                    g += value

    # -- modes and dtype ------------------------------------------------------------
    def train(self, mode=True):
        """Training mode (dropout on, calls recorded) or, with mode=False, eval mode. A
        change of mode gives this thread's free scratch buffers back (rnnlab.empty_cache()
        gives back every module's)."""
        mode = check_bool("mode", mode)
        if mode != self.__dict__["training"]:
            self._records.pool.clear()
        self.__dict__["training"] = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, *args, device=None, dtype=None):
        """``.to(np.float64)``, ``.to("cpu")``, ``.to(device="cpu", dtype=...)`` like torch.
        The same dtype returns the module unchanged (same parameter and gradient arrays);
        a real change makes new arrays, so an optimizer built before must be rebuilt."""
        for a in args:
            if isinstance(a, str) and a.split(":")[0] in ("cpu", "cuda", "mps", "meta"):
                device = a
            elif dtype is None:
                dtype = a
            else:
                raise TypeError(f"to() takes at most one device and one dtype, got {args}")
        if device is not None and str(device).split(":")[0] != "cpu":
            raise ValueError(f"rnnlab runs on the CPU only, got device {device!r}")
        if dtype is None:
            return self
        dt = resolve_dtype(dtype)
        if dt == self.dtype:
            return self
        with np.errstate(over="ignore", invalid="ignore"):
            for store in (self._parameters, self.grads):
                for name in store:
                    store[name] = aligned_copy(store[name], dt)
        self.__dict__["dtype"] = dt
        for key in _DERIVED:                         # views of the old arrays
            self.__dict__.pop(key, None)
        self._changed()
        self._reset_records()
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def cpu(self):
        return self

    # -- records --------------------------------------------------------------------
    def _reset_records(self):
        self.__dict__["_records"] = ThreadRecords()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_records", "_lock") + _DERIVED}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__dict__["_lock"] = threading.Lock()
        self._reset_records()
