"""``rnnlab warmup``: build every family's compiled float32 kernels now (compile them, or
load them from numba's disk cache), so that the first request of a fresh install or
container does not wait for the compiler. Prints what each family took and where the
cache lives (``NUMBA_CACHE_DIR`` moves it: set the same for the processes that use
rnnlab). ``jobs`` > 1 compiles families in that many processes at once (numba compiles
one function at a time per process; the processes share the disk cache, and this one
then loads what the others compiled)."""
import os
import subprocess
import sys
import time
import warnings

from ..cells import FAMILIES
from ..sequence import kernels


def _cost(kind):
    """A family's compile time in about seconds on the 2-core machine of BENCHMARKS.md,
    from its number of gates (measured alone, an empty cache: 1 gate 23.0 s, 3 gates 25.2,
    4 gates 27.0), to share the families out."""
    return 1.3 * FAMILIES[kind].num_gates + 21.7

_CHILD = ("import sys, warnings\n"
          "from rnnlab.cells import FAMILIES\n"
          "from rnnlab.sequence import kernels\n"
          "warnings.simplefilter('ignore')\n"
          "sys.exit(0 if all(kernels.warm(FAMILIES[k]) for k in sys.argv[1:]) else 1)\n")


def default_jobs():
    """One process per core, at most one per family with compiled kernels."""
    return max(1, min(os.cpu_count() or 1, len(_kinds())))


def _kinds():
    return [kind for kind, fam in FAMILIES.items() if fam.units is not None]


def _shares(kinds, jobs):
    """``kinds`` in ``jobs`` groups of about equal compile time, the costliest first."""
    groups = [[] for _ in range(jobs)]
    load = [0] * jobs
    for kind in sorted(kinds, key=lambda k: -_cost(k)):
        i = load.index(min(load))
        groups[i].append(kind)
        load[i] += _cost(kind)
    return [g for g in groups if g]


def build_in_parallel(jobs):
    """Compile the families whose kernels numba's cache lacks in ``jobs`` processes: all
    groups but one in child processes, that one here; returns once all are done. A child
    that fails changes nothing: the caller's own warm() builds what is still missing."""
    todo = [k for k in _kinds() if kernels.cache_state(FAMILIES[k])[0] is not True]
    groups = _shares(todo, min(jobs, len(todo))) if todo else []
    children = []
    for g in groups[1:]:
        try:
            children.append(subprocess.Popen([sys.executable, "-c", _CHILD, *g],
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.DEVNULL))
        except OSError:                   # no process to be had: warm() builds it here
            break
    try:
        for kind in groups[0] if groups else ():
            _warm_quietly(kind)
    except BaseException:                 # Ctrl-C here stops the other processes too
        for c in children:
            c.kill()
        raise
    finally:
        for c in children:
            c.wait()
    return groups[:1 + len(children)]     # the groups that were compiled at once


def _warm_quietly(kind):
    """kernels.warm of one family without its compile announcement (this command is it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", kernels.KernelCompileWarning)
        return kernels.warm(FAMILIES[kind])


def warmup(print_fn=print, jobs=1):
    """Returns 0 when every family with compiled kernels has them (or numba is not here:
    the NumPy path needs no warm-up), 1 when one failed to build."""
    if not kernels.available():
        print_fn("compiled kernels are off here (numba is not installed, or "
                 "RNNLAB_KERNELS=numpy): the NumPy path runs and needs no warm-up")
        return 0
    start = time.perf_counter()
    cached = {kind: kernels.cache_state(FAMILIES[kind]) for kind in _kinds()}
    groups = build_in_parallel(jobs) if jobs > 1 else []
    if len(groups) > 1:
        print_fn(f"compiling in {len(groups)} processes at once: "
                 + "; ".join(", ".join(g) for g in groups))
    status, where = 0, None
    for kind in _kinds():
        was_cached, at = cached[kind]
        where = where or at
        t0 = time.perf_counter()
        ok = _warm_quietly(kind)
        dt = time.perf_counter() - t0
        if not ok:
            status = 1
            print_fn(f"{kind}: not built ({kernels.FAILED.get(kind, 'unknown')}); the NumPy "
                     "path runs for it")
        elif was_cached is False and len(groups) > 1:
            print_fn(f"{kind}: compiled")
        else:
            how = {True: "loaded from the cache", False: "compiled"}.get(was_cached, "ready")
            print_fn(f"{kind}: {how} in {dt:.1f} s")
    print_fn(f"{time.perf_counter() - start:.1f} s in all; numba's cache: {where or 'unknown'} "
             "(NUMBA_CACHE_DIR moves it; later processes load from it in well under a "
             "second per family)")
    return status
