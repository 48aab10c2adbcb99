"""NumPy's OpenBLAS thread count, found and set through ctypes: the pair (pair.py) holds
it to one thread during its calls; and the address of its cblas_sgemm with 64-bit
integers (NumPy's wheels: ``scipy_cblas_sgemm64_``), which the pair's compiled loop
calls for a batch-1 sequence's input projections (_atomics.sgemm_nt)."""
import contextlib
import os
import threading
import time

import numpy as np

_state = {"blas": None, "sgemm": 0}


def _find_openblas():
    """(get, set) of NumPy's OpenBLAS thread count (ctypes), or None when NumPy's BLAS is
    not an OpenBLAS found in this process's mappings. Notes the address of its 64-bit
    integer cblas_sgemm in _state["sgemm"] (0: none)."""
    import ctypes
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:                       # older NumPy: trust the mappings alone
        info = "openblas"
    if "openblas" not in str(info).lower():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return None
    here = os.path.dirname(np.__file__)                 # numpy/ and, from a wheel, numpy.libs/
    paths = sorted(p for p in paths if p.startswith("/"))
    mine = [p for p in paths if p.startswith((here + os.sep, here + ".libs" + os.sep))]
    mine = mine or paths                                # a system OpenBLAS: if it is the only one
    if len(mine) != 1:
        return None
    try:
        lib = ctypes.CDLL(mine[0])
    except OSError:
        return None
    for prefix in ("scipy_openblas", "openblas"):
        for suffix in ("64_", ""):
            get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                get.restype, get.argtypes = ctypes.c_int, []
                put.restype, put.argtypes = None, [ctypes.c_int]
                _state["sgemm"] = _sgemm64(lib)
                return get, put
    return None


def _sgemm64(lib):
    """The address of ``lib``'s cblas_sgemm taking 64-bit integers (the names NumPy's
    wheels and ILP64 OpenBLAS builds give it), or 0. One with 32-bit integers is never
    taken: the compiled call passes 64-bit ones."""
    import ctypes
    for name in ("scipy_cblas_sgemm64_", "cblas_sgemm64_"):
        fn = getattr(lib, name, None)
        if fn is not None:
            return ctypes.cast(fn, ctypes.c_void_p).value or 0
    return 0


#: Seconds a reading of the process's CPU affinity stands (``usable_cpus``)
CPUS_AGAIN = 1.0
_CPUS = {"pid": None, "until": 0.0, "n": 1}


def usable_cpus():
    """CPUs this process may run on (pair.possible), as read at most CPUS_AGAIN seconds
    ago (a call asks several times; each read of the affinity ~0.4 us)."""
    now = time.monotonic()
    if now >= _CPUS["until"] or _CPUS["pid"] != os.getpid():
        try:
            n = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            n = os.cpu_count() or 1
        _CPUS.update(pid=os.getpid(), until=now + CPUS_AGAIN, n=n)
    return _CPUS["n"]


def sgemm_address():
    """The address of NumPy's OpenBLAS cblas_sgemm with 64-bit integers, or 0."""
    return _state["sgemm"] if _blas() else 0


def _blas():
    """(get, set) of NumPy's OpenBLAS thread count, or False (found once)."""
    if _state["blas"] is None:
        _state["blas"] = _find_openblas() or False
    return _state["blas"]


#: one_blas_thread's holders across threads, and the setting the first one found
_HOLD = {"lock": threading.Lock(), "count": 0, "saved": 1}


@contextlib.contextmanager
def one_blas_thread():
    """Within: NumPy's OpenBLAS on one thread (the pair's calls, and the calls the pair
    wants but runs alone: cooling down, or busy; their projection on two OpenBLAS threads
    would leave those spinning for ~0.1 s and take the core from the pair's next call,
    which then cools down again, and so on: measured, the pair ran 2 calls in 100). Held
    by several threads at once, the setting found by the first is put back by the last."""
    blas = _blas()
    if not blas:
        yield
        return
    get, put = blas
    with _HOLD["lock"]:
        if _HOLD["count"] == 0:
            _HOLD["saved"] = get()
            put(1)
        _HOLD["count"] += 1
    try:
        yield
    finally:
        with _HOLD["lock"]:
            _HOLD["count"] -= 1
            if _HOLD["count"] == 0:
                put(_HOLD["saved"])


def _after_fork():
    _HOLD.update(lock=threading.Lock(), count=0)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
