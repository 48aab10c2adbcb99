"""The numba code behind kernels.py, imported only when a compiled loop is first wanted
(importing numba costs ~0.5 s). Read kernels.py first.

Here: the primitives (float32 exp, sigmoid, tanh, relu and the recurrent products) and
``specialise``, which compiles the loop shapes of _loops.py (templates written once for
any family) for one family by binding the names they leave open to its numbers and scalar
units (cells/family.py), and caches each on disk under a name that carries a hash of the
family's source, so that an edited family is compiled again, never served stale.

float32 throughout (every constant is a float32: a Python float would promote the
arithmetic to float64). exp is Cephes' expf (range reduction by ln 2 in two parts, a
degree-5 polynomial, 2^n put together from its bits); tanh is Cephes' tanhf (an odd
polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above); sigmoid 1 / (1 + exp(-x)).
All three stay within a few float32 ulps of the exact values and keep NaN, +-inf and -0.0
as NumPy does (tests/test_kernels.py). Written so that LLVM vectorises the loops over
units: the units take scalars, branches are ones LLVM turns into selects,
error_model="numpy" (no ZeroDivisionError checks), and a unit loop writes into one scratch
row u, copied out afterwards (a loop writing into many arrays is not vectorised: LLVM
gives up on the runtime alias checks; measured 4x slower).
"""
import hashlib
import math
import os
import types as pytypes

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..tuning import WIDE_VECTORS
from ._atomics import atomic_load, cpu_relax, sched_yield, ticks
from ._tiles import product, product_from, project

f32 = np.float32
LOG2E, C1, C2 = f32(1.44269504088896341), f32(0.693359375), f32(-2.12194440e-4)
E0, E1, E2 = f32(1.9875691500e-4), f32(1.3981999507e-3), f32(8.3334519073e-3)
E3, E4, E5 = f32(4.1665795894e-2), f32(1.6666665459e-1), f32(5.0000001201e-1)
T0, T1, T2 = f32(-5.70498872745e-3), f32(2.06390887954e-2), f32(-5.37397155531e-2)
T3, T4 = f32(1.33314422036e-1), f32(-3.33332819422e-1)
ONE, TWO, HALF, ZERO = f32(1.0), f32(2.0), f32(0.5), f32(0.0)
HI, LO, SMALL = f32(88.0), f32(-87.0), f32(0.625)
UNDER = f32(-88.72283935546875)        # -log(FLT_MAX): below it float32 exp(-x) overflows


@intrinsic
def wide(typingctx):
    """Asks LLVM to prefer tuning.WIDE_VECTORS-bit vectors in the function that calls it
    (the attribute "prefer-vector-width" on it; nothing when 0, or where llvmlite's
    function attributes cannot take it: only speed is at stake). Loops whose vectorised
    code is lane by lane give the same bits at any width; sums in any order (reassoc) do
    not (tuning.py says which loops call it)."""
    def codegen(context, builder, sig, args):
        if WIDE_VECTORS:
            try:        # llvmlite checks its own names only: a string attribute as is
                set.add(builder.function.attributes,
                        f'"prefer-vector-width"="{int(WIDE_VECTORS)}"')
            except (AttributeError, TypeError):
                pass
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def _i32_as_f32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


inline = njit(cache=True, error_model="numpy", inline="always")
#: the scalar primitives (exp, sigmoid, tanh, relu): compiled once and called; LLVM inlines
#: them into every loop all the same (the kernels' speed measured unchanged). Inlined by
#: numba instead, each of their call sites in a family's units re-ran numba's passes on
#: them: 53 against 43 s of `rnnlab warmup` (BENCHMARKS.md, "Cold start")
scalar = njit(cache=True, error_model="numpy", fastmath={"contract"})


@scalar
def _exp(x):
    """exp for float32 x in [LO, HI] (callers clamp). NaN passes the clamps (numba's min
    and max give NaN) and comes out undefined (np.int32(NaN) is LLVM's poison): sigmoid
    and tanh then return x itself through a select, which drops the other value
    whatever it is. Testing n for NaN here cost 7% of an LSTM unit's time."""
    n = np.floor(x * LOG2E + HALF)
    r = x - n * C1 - n * C2
    p = ((((((E0 * r + E1) * r + E2) * r + E3) * r + E4) * r + E5) * r * r + r) + ONE
    return p * _i32_as_f32((np.int32(n) + np.int32(127)) << np.int32(23))


@scalar
def _sigmoid(x):
    s = ONE / (ONE + _exp(min(max(-x, LO), HI)))
    s = ZERO if x <= UNDER else s                      # exp(-x) = inf there: exactly 0, as
    return s if x == x else x                          # NumPy (0 * inf must stay NaN); NaN
                                                       # for NaN (_exp's value dropped)


@scalar
def _tanh(x):
    a = abs(x)
    z = x * x
    small = x * (ONE + ((((T0 * z + T1) * z + T2) * z + T3) * z + T4) * z)   # odd; -0 -> -0
    big = math.copysign(ONE - TWO / (_exp(min(a + a, HI)) + ONE), x)   # a bit operation
    t = small if a < SMALL else big
    return t if x == x else x                          # NaN for NaN (_exp's value dropped)


@inline
def _rowdot(w, j, v):
    """w[j] @ v (summed in any order where the caller allows reassoc)."""
    acc = ZERO
    for k in range(v.shape[0]):
        acc += w[j, k] * v[k]
    return acc


@inline
def _rowdots(a, j0, w, r0, count, v, back):
    """a[j0 + i] = w[r0 + i] @ v for i < count, eight rows per pass over v: each load of v
    serves eight rows and eight sums run at once (the rest one row at a time). Four rows
    per pass instead of one: in the pair's loop (T = 1000, both threads, old and new
    alternated in one process) LSTM H = 256 10.0 -> 9.0 us per step, GRU 7.0 -> 6.1; one
    thread alone at RNN H = 512 15.3 -> 11.9. Eight instead of four: a 1024 x 256 matrix
    alone 15.3 -> 13.1 us (69 -> 80 GB/s from L2; one 1024 x 256 sgemv of OpenBLAS on one
    thread 14.8), the one-thread GRU H 256 step 31-34 -> 26-27 us (BENCHMARKS.md).
    back: the same blocks and sums (the same bits), taken from the last block to the
    first: a loop that reads more rows than its core's L2 holds, alternating, finds the
    rows it read last still there (a cyclic scan in one order finds none)."""
    K = v.shape[0]
    nb = count // 8
    for q in range(nb):
        i = 8 * (nb - 1 - q if back else q)
        r = r0 + i
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = ZERO
        for k in range(K):
            vk = v[k]
            s0 += w[r, k] * vk
            s1 += w[r + 1, k] * vk
            s2 += w[r + 2, k] * vk
            s3 += w[r + 3, k] * vk
            s4 += w[r + 4, k] * vk
            s5 += w[r + 5, k] * vk
            s6 += w[r + 6, k] * vk
            s7 += w[r + 7, k] * vk
        a[j0 + i], a[j0 + i + 1], a[j0 + i + 2], a[j0 + i + 3] = s0, s1, s2, s3
        a[j0 + i + 4], a[j0 + i + 5], a[j0 + i + 6], a[j0 + i + 7] = s4, s5, s6, s7
    for i in range(8 * nb, count):
        a[j0 + i] = _rowdot(w, r0 + i, v)


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _project_rows(a, gx_tn, rest, h_n, w_hh, split):
    """_project for W_hh itself, (G*H, H_out) row-major (a live parameter): one dot
    product per output, summed in any order (reassoc lets LLVM vectorise it)."""
    for j in range(a.shape[0]):
        a[j] = (gx_tn[j] if j < split else rest[j - split]) + _rowdot(w_hh, j, h_n)


@inline
def _recurrent(A, gx_t, rest, prev, w, split, rows):
    """A[n] = [gx_t[n][:split] | rest] + prev[n] @ W for every row n: W is w_hh_t
    (H_out, G*H) (the products in register tiles, _tiles.product), or with rows=True
    W_hh itself (G*H, H_out). Every column from gx_t (split = G*H: LSTM, RNN, and any
    family's input projection), the tiles start their sums from gx_t's rows (the same
    bits without copying them into A first: LSTM (100, 64, 256, 256) 12 us of a half's
    ~245 us step here, BENCHMARKS.md)."""
    N, J = A.shape
    if rows:
        for n in range(N):
            _project_rows(A[n], gx_t[n], rest, prev[n], w, split)
        return
    if split == J:
        product_from(A, gx_t, prev, w)
        return
    for n in range(N):
        for j in range(split):
            A[n, j] = gx_t[n, j]
        for j in range(split, J):
            A[n, j] = rest[j - split]
    product(A, prev, w)


@scalar
def _relu(a):
    """NumPy's maximum(a, 0): NaN stays NaN, -0.0 gives 0.0."""
    return a if a > ZERO or a != a else ZERO


@inline
def _copy(dst, src, start):
    """dst[:] = src[start:start + len(dst)]. The kernels copy arrays so, never by
    assigning one to a slice or row (``x[lo:hi] = y``, ``X[n] = y``): numba then builds
    its shape-mismatch message, string formatting that cost the first LSTM call ~3 s of
    compiling (BENCHMARKS.md, "Cold start")."""
    for k in range(dst.shape[0]):
        dst[k] = src[start + k]


@inline
def _wait_for(sync, i, least, spins):
    """Spin until sync[i] >= least, or for ``spins`` pauses (-1: no limit). A long wait
    yields the core now and then (the other thread may not be running)."""
    k = 0
    while atomic_load(sync, i) < least and k != spins:
        cpu_relax()
        k += 1
        if k % 4096 == 0:
            sched_yield()


@njit(cache=True)
def now_ticks():
    """The cycle counter (pair_step.py calibrates it against time.perf_counter)."""
    return ticks()


@njit(cache=True, nogil=True)
def await_change(box, i, seen, budget):
    """Spin until box[i] != seen (True) or ``budget`` cycle-counter ticks pass (False),
    pausing and yielding the core at every look (a thread that needs it gets it)."""
    t0 = ticks()
    while atomic_load(box, i) == seen:
        if ticks() - t0 > budget:
            return False
        cpu_relax()
        sched_yield()
    return True


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def project_few(out, x, w3, lo, hi):
    """out[i, g * B + u] = x[i] @ w3[g, lo + u] (B = hi - lo): the input projection of a few
    rows (linalg.project), x (M, K), w3 (G, H, K) W_ih by gates, out (M, G * B), all
    C-contiguous float32; four rows of x per pass over a row of W_ih, each row of W_ih
    read once per four rows of x (OpenBLAS packs all of W_ih for such a product)."""
    G, K, M, B = w3.shape[0], x.shape[1], x.shape[0], hi - lo
    for g in range(G):
        for u in range(B):
            r, c, i = lo + u, g * B + u, 0
            while i + 4 <= M:
                s0 = s1 = s2 = s3 = ZERO
                for k in range(K):
                    wk = w3[g, r, k]
                    s0 += x[i, k] * wk
                    s1 += x[i + 1, k] * wk
                    s2 += x[i + 2, k] * wk
                    s3 += x[i + 3, k] * wk
                out[i, c], out[i + 1, c], out[i + 2, c], out[i + 3, c] = s0, s1, s2, s3
                i += 4
            while i < M:
                s0 = ZERO
                for k in range(K):
                    s0 += x[i, k] * w3[g, r, k]
                out[i, c] = s0
                i += 1


def warm_helpers():
    """Compile (or load) the kernels outside the families' loops: the pair's cycle counter
    and spin (~0.4 s to compile, else at their first call), project_few and the tiles'
    projection."""
    now_ticks()
    await_change(np.zeros(1, np.int64), 0, 1, 0)
    z = np.zeros((1, 1), f32)
    project_few(z, z, np.zeros((1, 1, 1), f32), 0, 1)
    project(z, z, z)


#: what a family's scalar units may call, by name (cells/activations.py has the NumPy side)
PRIMITIVES = {"sigmoid": _sigmoid, "tanh": _tanh, "relu": _relu, "ONE": ONE, "ZERO": ZERO}


_LOOP = dict(cache=True, error_model="numpy", fastmath={"contract"})      # FMA: ~15% less
_DOTS = dict(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
SHAPES = {"sequence": [("forward", "SEQUENCE", dict(_LOOP, nogil=True)),
                      ("forward_in", "SEQUENCE_IN", dict(_LOOP, nogil=True)),
                      ("backward", "SEQUENCE_BACK", dict(_LOOP, nogil=True)),
                      ("pair", "PAIR_IN", dict(_DOTS, nogil=True))],
          "step": [("step", "STEP", _LOOP), ("back", "BACK_STEP", _LOOP)],
          "cell": [("cell", "CELL", _LOOP)],
          "rows": [("rows", "ROWS", dict(_DOTS, parallel=True)),
                   ("rows_1", "ROWS_ONE", dict(_DOTS, nogil=True))]}
#: per-family templates the shapes' loops call: inlined, or (CALLED) compiled on their own
HELPERS = {"rows": ("ROWS_BLOCK",), "sequence": ("SEQ_IN_ROWS",)}
CALLED = {"sequence": ("PAIR_BATCH", "SEQUENCE_PAIR")}    # in this order


def _bound(fn, names, name=None, **options):
    """``fn`` compiled with ``names`` bound in its globals (its own module's otherwise);
    ``name``: the qualified name numba's disk cache files it under."""
    scope = dict(fn.__globals__)
    scope.update(names)
    copy = pytypes.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__,
                                fn.__closure__)
    if name is not None:
        copy.__qualname__ = name
    return njit(**options)(copy)


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _tag(units):
    """A hash of everything a family's compiled loops are made of: its bindings, its
    source and the code inlined into its loops (this file, _loops, _loops_in, _atomics,
    _tiles, _kept, tuning's constants, pair's box layout). numba's cache checks only the file of the
    function it caches: an edit to an inlined helper alone was served stale from the cache
    (measured); an edit here makes a new name, compiled again."""
    from .. import tuning
    from . import _atomics, _kept, _loops, _loops_in, _tiles, pair
    digest = hashlib.sha1(repr(sorted(units.bind.items())).encode())
    own = {fn.__code__.co_filename for fn in units.functions + (units.forward, units.backward)}
    for path in sorted(own | {__file__, _loops.__file__, _atomics.__file__, tuning.__file__,
                                        _loops_in.__file__, pair.__file__, _tiles.__file__,
                                        _kept.__file__}):
        digest.update(_read(path))
    return digest.hexdigest()[:12]


def specialise(family):
    """{kernel name: compiled function} for ``family``'s shapes (its ``units``). Nothing is
    compiled until a function is first called (kernels.py warms them up)."""
    units = family.units
    names = dict(PRIMITIVES)
    names.update({k: (PRIMITIVES[v] if isinstance(v, str) else v)
                  for k, v in units.bind.items()})
    for fn in units.functions + (units.forward, units.backward):
        names[fn.__name__] = _bound(fn, names, inline="always", error_model="numpy")
    from . import _loops
    tag = _tag(units)
    names.update(G=family.num_gates, F=family.fold, S=family.store, CB=max(family.c_block, 0),
                 HAS_C=family.has_cell_state, DIRECT=units.direct,
                 FORWARD_UNITS=names[units.forward.__name__],
                 BACK_UNITS=names[units.backward.__name__])
    for shape in units.shapes:
        for helper in HELPERS.get(shape, ()):
            names[helper] = _bound(getattr(_loops, helper), names, inline="always",
                                   error_model="numpy")
        for helper in CALLED.get(shape, ()):
            names[helper] = _bound(getattr(_loops, helper), names,
                                   f"{helper.lower()}_{family.kind}_{tag}", **_DOTS, nogil=True)
    out = {}
    for shape in units.shapes:
        for key, template, options in SHAPES[shape]:
            out[key] = _bound(getattr(_loops, template), names, f"{key}_{family.kind}_{tag}",
                              **options)
    return out


def cache_state(built):
    """(whether every function of ``built`` has an entry in numba's disk cache, the cache
    directory), or (None, None) when numba's cache cannot be inspected."""
    try:
        files = [d._cache._cache_file._index_path for d in built.values()]
        where = next(iter(built.values()))._cache._cache_path
    except (AttributeError, StopIteration):      # numba's internals moved: unknown
        return None, None
    return all(os.path.exists(f) for f in files), where
