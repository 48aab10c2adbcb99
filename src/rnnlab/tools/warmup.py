"""``rnnlab warmup``: build every family's compiled float32 kernels now (compile them, or
load them from numba's disk cache), so that the first request of a fresh install or
container does not wait for the compiler. Prints what each family took and where the
cache lives (``NUMBA_CACHE_DIR`` moves it: set the same for the processes that use
rnnlab)."""
import time
import warnings

from ..cells import FAMILIES
from ..sequence import kernels


def warmup(print_fn=print):
    """Returns 0 when every family with compiled kernels has them (or numba is not here:
    the NumPy path needs no warm-up), 1 when one failed to build."""
    if not kernels.available():
        print_fn("compiled kernels are off here (numba is not installed, or "
                 "RNNLAB_KERNELS=numpy): the NumPy path runs and needs no warm-up")
        return 0
    status, where, total = 0, None, 0.0
    for kind, fam in FAMILIES.items():
        if fam.units is None:
            continue
        cached, at = kernels.cache_state(fam)
        where = where or at
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", kernels.KernelCompileWarning)
            ok = kernels.warm(fam)
        dt = time.perf_counter() - t0
        total += dt
        if not ok:
            status = 1
            print_fn(f"{kind}: not built ({kernels.FAILED.get(kind, 'unknown')}); the NumPy "
                     "path runs for it")
        else:
            how = {True: "loaded from the cache", False: "compiled"}.get(cached, "ready")
            print_fn(f"{kind}: {how} in {dt:.1f} s")
    print_fn(f"{total:.1f} s in all; numba's cache: {where or 'unknown'} (NUMBA_CACHE_DIR "
             "moves it; later processes load from it in well under a second per family)")
    return status
