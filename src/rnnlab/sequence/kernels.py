"""Compiled float32 kernels (numba, the optional ``fast`` extra) for every family whose
record has scalar units (``Family.units``; cells/family.py).

At (T, N, H) = (50, 16, 32) a NumPy cell step is ~12 ufunc calls of ~1 us each forward and
~20 backward; a compiled loop does the recurrent matmul and every gate of every unit in one
pass. The loop shapes (``Units.shapes`` says which a family takes; _compiled.py writes each
once for all families):

- ``sequence`` (``kernel_for``): the whole time loop of a direction, without lengths or
  projections, while N * G*H * H_out <= tuning.COMPILED_LOOP_MAX or W_hh has at most
  tuning.TILE_ROW_WEIGHTS weights per row (else OpenBLAS's matmul wins): forward,
  unrecorded or recording (it leaves the gate values and stored values where the NumPy
  step leaves them, for either backward), and the BPTT loop when some gradient reaches h
  at the last step and no per-step norms are asked for (dW, biases, dx: BLAS after it);
  and ``pair``: the unrecorded loop of one direction shared by two threads (pair.py),
  ``forward_in``: a batch's, its input projected a few steps at a time;
- ``step`` (``cell_steps``): one step and one back step for the driver's own loop
  everywhere else (lengths, projections, large sizes: BLAS's matmuls, compiled gates);
- ``cell`` (``cell_for``): the gates of one step from BLAS's products, for ``layer.step``
  and ``freeze()`` at batch 1-4 (stepper.py);
- ``rows`` (``rows_step_for``): the threaded few-row step of ``freeze(threads=k)`` and of
  ``layer.step`` after ``set_num_threads(k)``, k >= 3, opt-in; and in the calling thread
  (``row_step_for``, ``pair_step_for``: _loops.ROWS_ONE) the small layers' step and the
  pair's step (pair_step.py).

float64, families without units and machines without numba run the NumPy path.

Numbers: the family's own equations (its scalar units), in float32; exp, sigmoid and tanh
our own (Cephes' float32 algorithms, _compiled.py: pip's llvmlite has no vector math
library), within a few float32 ulps, so the results equal the NumPy path's to float32
rounding (tests/test_kernels.py). NaN, inf and -0.0 go through as there (sigmoid is
exactly 0 where exp(-x) overflows: 0 * inf stays NaN in the gradients).

``RNNLAB_KERNELS=numpy`` in the environment turns them off. The first use of a family in a
process imports numba (~0.5 s); each kernel is then loaded from numba's cache (next to
_compiled.py, or NUMBA_CACHE_DIR) on its own first use, so inference never builds the
backward loops. The first use after installing compiles instead (an empty cache: the
first GRU or LSTM inference call 6 s, the other's after it 2 s, every kernel of the four
families 50 s on 2 cores), announced once per process with a KernelCompileWarning;
``rnnlab warmup`` does it ahead of time. Without numba, or where a kernel fails to
compile, the NumPy path runs."""
import contextlib
import os

import numpy as np

from ..checks import check_int
from ..tuning import COMPILED_LOOP_MAX, PAIR_STEP_MIN, THREAD_UNITS, THREADED_MIN, TILE_ROW_WEIGHTS

_state = {"numba": None, "threads": None, "announced": False}   # threads: None = not set
_BUILT = {}              # family -> {kernel name: function}, or None (NumPy for it)
_THREADED = {}           # family -> rows_step_for's step (the threaded rows, or serial)
FAILED = {}              # kind -> why its kernels did not build (NumPy runs for it)
NO_STORE = np.zeros((1, 1, 1), np.float32)   # the store argument of unrecorded calls
NO_BIAS = np.zeros(0, np.float32)            # the bias argument of a loop without one
NO_BOX = np.zeros(1, np.int64)               # the box of role 0 (reads only box[0])
_NONE2 = np.zeros((1, 1), np.float32)        # a 2-D argument a family does not read


def available():
    """Whether compiled kernels can run here (numba importable, not turned off)."""
    if _state["numba"] is None:
        ok = os.environ.get("RNNLAB_KERNELS", "").lower() != "numpy"
        if ok:
            try:
                from . import _compiled  # noqa: F401  (imports numba)
            except Exception:             # numba missing, or unusable here
                ok = False
        _state["numba"] = ok
    return _state["numba"]


class KernelCompileWarning(UserWarning):
    """rnnlab is about to compile a family's float32 kernels (none in numba's cache)."""


def _announce(fam, where):
    if _state["announced"]:
        return
    _state["announced"] = True
    import warnings
    try:
        warnings.warn(f"rnnlab is compiling its float32 kernels for {fam.kind} (the first use "
                      "since installing: 2-8 s a kind of call, ~20 s a batch-1 sequence on two "
                      "threads, once; later processes load them from numba's cache in "
                      f"{where}). Run `rnnlab warmup` at install time to pay this ahead; "
                      "RNNLAB_KERNELS=numpy skips them.", KernelCompileWarning, stacklevel=4)
    except Warning:                  # warnings turned into errors: still build the kernels
        pass


class _Built(dict):
    """A family's compiled functions by name. Each is compiled (or loaded from numba's
    cache) on its first ``get``, so a process that only runs inference never compiles the
    backward loops; one that fails to build is None from then on (the NumPy path)."""

    def __init__(self, fam, functions):
        super().__init__(functions)
        self.fam, self.done = fam, set()

    def get(self, key, default=None):
        if key not in self:
            return default
        if key not in self.done and _warmed(key):
            from . import _compiled
            fn = dict.__getitem__(self, key)
            cached, where = _compiled.cache_state({key: fn})
            if cached is False:
                _announce(self.fam, where)
            try:
                _warm(self.fam, {key: fn})
            except Exception as exc:         # unable to compile here: NumPy for it
                FAILED[self.fam.kind] = f"{key}: {type(exc).__name__}: {exc}"
                self[key] = None
            self.done.add(key)
        return dict.__getitem__(self, key)

    __getitem__ = get


def kernels(fam, shape):
    """The family's compiled functions when it has ``shape`` (and numba is there), else
    None: a mapping whose functions compile (or load from numba's cache) on first use."""
    units = fam.units
    if units is None or shape not in units.shapes:
        return None
    if fam not in _BUILT:
        _BUILT[fam] = None
        if available():
            from . import _compiled
            try:
                _BUILT[fam] = _Built(fam, _compiled.specialise(fam))
            except Exception as exc:         # unable to build here: NumPy for it
                FAILED[fam.kind] = f"{type(exc).__name__}: {exc}"
    return _BUILT[fam]


def warm(fam):
    """Build (compile, or load from numba's cache) every compiled kernel of ``fam`` now
    (the threaded rows step waits for its first call); True when it has them all.
    ``rnnlab warmup`` calls it for every family."""
    k = kernels(fam, next(iter(fam.units.shapes))) if fam.units else None
    if k is None:
        return False
    from . import _compiled                  # the pair's spin, linalg.project's kernel
    _compiled.warm_helpers()
    return all(k.get(key) is not None for key in list(k) if _warmed(key))


def _warmed(key):
    """Whether kernel ``key`` is built ahead (warm, ``rnnlab warmup``) and announced when
    it compiles: all but the threaded rows step, built on its first call (that call
    starts numba's threads)."""
    return key != "rows"


def cache_state(fam):
    """(whether ``fam``'s kernels are in numba's disk cache, the cache directory); (None,
    None) when unknown (no numba, no units, or numba's cache not inspectable)."""
    if fam.units is None or not available():
        return None, None
    from . import _compiled
    return _compiled.cache_state({key: fn for key, fn in _compiled.specialise(fam).items()
                                  if _warmed(key)})


@contextlib.contextmanager
def disabled():
    """Within: every family runs the NumPy path (the tests compare the two paths)."""
    from ..cells import FAMILIES
    saved = dict(_BUILT)
    try:
        _BUILT.update({fam: None for fam in FAMILIES.values()})
        yield
    finally:
        _BUILT.clear()
        _BUILT.update(saved)


def is_ready(a):
    """Whether the compiled code takes a as it is: C-contiguous and writeable (a read-only
    array is a type of its own for numba: it would compile again mid-run)."""
    return a.flags.c_contiguous and a.flags.writeable


def ready(a):
    """a as the compiled code takes it (is_ready), copied only when it must be."""
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


def kernel_for(fam, dtype, N, GH, H_out, has_proj, backward=False, limit=None, name=None):
    """The compiled time loop for this call (N * G*H * H_out <= limit, COMPILED_LOOP_MAX
    by default: pair.loop_limit; or at most TILE_ROW_WEIGHTS weights of W_hh per row), or
    None (the NumPy path); ``name``: another "sequence" kernel (_compiled.SHAPES).
    Forward: kernel(gx, w_hh_t, bias, b_rest, h0, c0, reverse, out, c_n, rows, store,
    record, lo, hi); backward=True: kernel(dout, has_dout, dh, dc, acts, store, h0, c0,
    out, w_hh, reverse, dgx, dgr, lo, hi) (SEQUENCE, SEQUENCE_BACK: rows lo:hi, lo even)."""
    big = N * GH * H_out > (COMPILED_LOOP_MAX if limit is None else limit)
    if dtype != np.float32 or has_proj or N == 0 or (big and not by_rows(N, GH, H_out)):
        return None                         # decided before numba is ever imported
    k = kernels(fam, "sequence")
    return None if k is None else k.get(name or ("backward" if backward else "forward"))


def by_rows(N, GH, H_out):
    """At most TILE_ROW_WEIGHTS weights of W_hh per row: compiled by rows past its limit."""
    return GH * H_out <= N * TILE_ROW_WEIGHTS


def cell_steps(fam, dtype, bias=None, b_rest=None):
    """(step, back, adds) for the driver's own time loop (lengths, projections, sizes above
    COMPILED_LOOP_MAX: there BLAS does the matmuls): the family's NumPy step and back, or
    in float32 the compiled ones, with the same arguments and results. adds=True: the step
    adds ``bias`` (G*H,) to x W_ih^T and ``b_rest`` ((G-F)*H,) to h W_hh^T itself, so the
    caller must not; give both as C-contiguous arrays (zeros without bias) when asking for
    the step (the back alone needs neither)."""
    k = kernels(fam, "step") if dtype == np.float32 else None
    compiled_step, compiled_back = (None, None) if k is None else (k.get("step"), k.get("back"))
    cb = fam.c_block

    def step(gx, gh, h, c, h_new, store):
        h_, c_ = ready(h), (None if c is None else ready(c))
        compiled_step(gx, gh, bias, b_rest, h_, h_ if c_ is None else c_, h_new, store)
        H = h_new.shape[1]
        return (None if cb < 0 else store[:, cb * H:(cb + 1) * H]), (gx, store, h_, c_)

    def back(dh_new, dc_new, cache, dgx, dgr):
        if dh_new is None:                               # no branch through h: NumPy's
            return fam.back(dh_new, dc_new, cache, dgx, dgr)
        acts, store, h, c = cache
        direct = np.empty(dh_new.shape, np.float32)
        dc_prev = np.empty(dh_new.shape, np.float32) if c is not None else direct
        dc_in = np.zeros(dh_new.shape, np.float32) if dc_new is None else ready(dc_new)
        compiled_back(ready(dh_new), dc_in, acts, store, h, h if c is None else c, dgx,
                      _NONE2 if dgr is None else dgr, direct, dc_prev)
        return (direct if fam.units.direct else None), (None if c is None else dc_prev)
    back = fam.back if compiled_back is None else back
    if bias is None or compiled_step is None:
        return fam.step, back, False
    return step, back, True


def step_caches(fam, gx, store, out, h0, c0, reverse):
    """After a recording compiled forward (when a NumPy backward needs them): per step, the
    cache the step would have returned, (gate values, store, h before, c before), as views
    of gx, store, out and the initial states."""
    T = gx.shape[0]
    H = out.shape[2]
    cb = fam.c_block
    caches = [None] * T
    for s in range(T):
        t = T - 1 - s if reverse else s
        p = t + 1 if reverse else t - 1
        c = None if c0 is None else (c0 if s == 0 else store[p, :, cb * H:(cb + 1) * H])
        caches[t] = (gx[t], store[t], h0 if s == 0 else out[p], c)
    return caches


def cell_for(fam, dtype):
    """The compiled gates of one step of N rows from BLAS's products, or None:
    cell(ax, ah, has_h, b_ih, b_hh, h, c, h_new, c_new) (_compiled.CELL), every array
    C-contiguous float32 (c and c_new: any (N, H) arrays without a cell state)."""
    k = kernels(fam, "cell") if dtype == np.float32 else None
    return None if k is None else k.get("cell")


def rows_step_for(fam, dtype, has_proj, size):
    """The compiled step of a few rows (``freeze(threads=k)``, and ``layer.step`` after
    set_num_threads(k), k >= 3, or 2 where the pair cannot run; N <= FEW_ROWS) from the
    weights in torch's layout, its units split over numba's threads, or None. Called as
    step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, threads), all C-contiguous
    float32 (biases zeros when absent; c, c_new any (N, H) arrays without a cell state).
    size: the layer's weight count G*H * (I + H_out); below THREADED_MIN threads do not
    pay.

    Opt-in, never the default: numba's OpenMP threads spin after each step, and so do
    OpenBLAS's after its calls; a threaded BLAS call between two steps (a large output
    layer, say) then fights them for the cores (measured: a 1 x 256 @ 256 x 30000 matmul
    after each step, 0.7 ms per step single-threaded, 10 ms with threads)."""
    if dtype != np.float32 or has_proj or size < THREADED_MIN:
        return None
    k = kernels(fam, "rows")
    if k is None or "rows" not in k:
        return None
    if fam not in _THREADED:
        _THREADED[fam] = _threaded(k["rows"], k["rows_1"])
    return _THREADED[fam]


def row_step_for(fam, dtype, has_proj, size):
    """The compiled step of a few rows in the calling thread (``_loops.ROWS_ONE``, role 0:
    one call per layer from the weights in torch's layout), or None. Taken by
    ``layer.step`` at N <= FEW_ROWS for float32 layers of fewer than THREADED_MIN weights
    (``size`` as rows_step_for's), where it beats two BLAS matrix-vector products and the
    compiled cell (GRU H 64: 3.1 vs 6.1 us, LSTM H 128: 9.7 vs 12.1; even at H 256, where
    OpenBLAS's threads take over). Called as step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new,
    c_new, 0, NO_BOX, 0, 0)."""
    return None if size >= THREADED_MIN else _rows_one(fam, dtype, has_proj)


def pair_step_for(fam, dtype, has_proj, size):
    """The same compiled function for the pair's step (pair_step.py calls it in its other
    roles) of a layer of ``size`` weights, or None: PAIR_STEP_MIN weights and more."""
    return None if size < PAIR_STEP_MIN else _rows_one(fam, dtype, has_proj)


def _rows_one(fam, dtype, has_proj):
    if dtype != np.float32 or has_proj:
        return None
    k = kernels(fam, "rows")
    return None if k is None else k.get("rows_1")


def set_num_threads(n):
    """``rnnlab.set_num_threads(n)`` (torch's name): how many threads rnnlab's own compiled
    code may use.

    - Unrecorded sequences (inference): by default, on a machine with two usable CPUs,
      a large enough layer runs each call on two threads (the caller and rnnlab's one
      worker thread): batch 1 by units (pair.py), 3 rows and more by rows (halves.py;
      n = 1: the same two halves one after the other). n = 1 turns the pair off.
    - Steps: ``layer.step`` and ``freeze().step`` at batch 1-4 (FEW_ROWS) of float32
      layers of PAIR_STEP_MIN weights and more run on the pair's two threads by default
      and with n = 2 (pair_step.py); n = 1 turns that off. With n >= 3 ``layer.step`` of
      layers of THREADED_MIN weights and more splits each step over n of numba's threads,
      and ``freeze()`` without ``threads=`` takes n (opt-in: see rows_step_for).
    NumPy's BLAS keeps its own thread setting (threadpoolctl changes it)."""
    _state["threads"] = check_int("set_num_threads: the number of threads", n)


def get_num_threads(explicit=False):
    """set_num_threads' setting (1 unless set); explicit=True: None when never set."""
    return _state["threads"] if explicit or _state["threads"] is not None else 1


def _threaded(kernel, serial):
    """The rows step: ``kernel`` (numba threads) in this process when numba's threading
    layer is thread-safe (OpenMP or TBB), else and in forked children (GNU OpenMP aborts
    a child that forks from a process using it) ``serial``, in the calling thread.
    Threads: at most numba's thread count as the first call finds it (asking numba at
    every step cost ~2.5 us)."""
    import numba
    where = {}                              # "pid": the process whose threads may run it

    def step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, threads):
        if "pid" not in where:              # the first call: starts numba's threads
            kernel(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, 1)
            where["pid"] = (os.getpid() if numba.threading_layer() in ("omp", "tbb")
                            else None)
            where["most"] = numba.get_num_threads()
        elif os.getpid() == where["pid"]:
            P = min(threads, where["most"], max(1, h.shape[1] // THREAD_UNITS))
            kernel(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, P)
        else:
            serial(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, 0, NO_BOX, 0, 0)
    return step


def _warm(fam, k):
    """Compile (or load from numba's cache) a family's kernels for the argument types
    the driver and the steppers pass, by running each once on a tiny input (no call
    compiles mid-run). The threaded one waits for its first use (it starts threads)."""
    f32 = np.float32
    G, S = fam.num_gates, fam.store
    GH, FH = G, fam.fold
    h, z1 = np.zeros((2, 1), f32), np.zeros(GH, f32)
    gx, store = np.zeros((2, 2, GH), f32), np.zeros((2, 2, S), f32)
    out, g2 = np.zeros((2, 2, 1), f32), np.zeros((2, GH), f32)
    if "forward" in k:
        for rows, w in ((False, np.zeros((1, GH), f32)), (True, np.zeros((GH, 1), f32))):
            k["forward"](gx, w, z1, np.zeros(GH - FH, f32), h, h.copy(), False, out,
                         h.copy(), rows, store, True, 0, 2)
    if "forward_in" in k:          # role 0 (pair_step.halves): both halves here
        x3, h3, w1 = np.zeros((2, 3, 1), f32), np.zeros((3, 1), f32), np.zeros((1, GH), f32)
        k["forward_in"](x3, w1, z1, w1, z1[FH:], h3, h3, False, x3.copy(), h3.copy(), 0,
                        NO_BOX, 0, 0)
    if "pair" in k:        # role 3 (pair.loop, p = 0, both projections made): alone
        H2, sync, wt = np.zeros((1, 2), f32), np.zeros(10, np.int64), np.zeros((0, 0), f32)
        sync[6] = sync[9] = 1
        k["pair"](wt, wt, np.zeros((2 * G, 2), f32), np.zeros(2 * G, f32),
                  np.zeros(2 * (G - fam.fold), f32), H2, H2.copy(), False,
                  np.zeros((2, 1, 2), f32), H2.copy(), np.zeros((2, G), f32),
                  np.zeros((2, G), f32), sync, 0, wt, wt, 3, NO_BOX, 0, 0)
    if "backward" in k:
        k["backward"](out, True, h.copy(), h.copy(), gx, store, h, h, out,
                      np.zeros((GH, 1), f32), False, np.zeros((2, 2, GH), f32),
                      np.zeros((2, 2, max(GH - FH, 1)), f32), 0, 2)
    if "step" in k:
        k["step"](g2, g2.copy(), z1, np.zeros(GH - FH, f32), h, h, h.copy(), store[0])
    if "back" in k:
        k["back"](h, h, g2, store[0], h, h, g2.copy(), np.zeros((2, max(GH - FH, 1)), f32),
                  h.copy(), h.copy())
    if "rows_1" in k:              # the row steps (row_step_for, pair_step_for): role 0
        x1 = np.zeros((1, 1), f32)
        k["rows_1"](x1, x1.copy(), x1.copy(), np.zeros((GH, 1), f32), np.zeros((GH, 1), f32),
                    z1, z1, x1.copy(), x1.copy(), 0, NO_BOX, 0, 0)
    if "cell" in k:
        for has_h in (True, False):
            k["cell"](g2, g2, has_h, z1, z1, h, h, h.copy(), h.copy())
