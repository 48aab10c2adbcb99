"""The few atomic operations the two-thread sequence loop (_loops.SEQUENCE_PAIR) needs to
share a step between two threads without a lock: numba has none of its own, so each is
one LLVM instruction on an int64 array element (llvmlite's IR builder).

- ``atomic_add(a, i, v)``: a[i] += v, returns the old value (sequentially consistent: the
  writes before it are seen by whoever reads the new value);
- ``atomic_xchg(a, i, v)``: a[i] = v, returns the old value (a claim: 0 -> mine);
- ``atomic_load(a, i)``: a[i] read with acquire ordering (never hoisted out of a wait
  loop; what the other thread wrote before its add is seen after it);
- ``atomic_cas(a, i, old, new)``: a[i] = new if a[i] == old, returns what a[i] was (a
  claim that only the request it names can win: pair_step.py);
- ``ticks()``: the CPU's cycle counter (x86's rdtsc; pair_step calibrates it), for a
  spin bounded in time;
- ``address(a)`` / ``f32_at(i)``, ``i64_at(i)``: an array's data address as an int64, and
  back as a float32 or int64 pointer for ``numba.carray`` (the pair's step hands its
  worker a layer's arrays through an int64 array);
- ``cpu_relax()``: x86's ``pause`` in a spin loop (nothing elsewhere);
- ``sched_yield()``: the C library's, after a long spin (the other thread may not be
  running at all: a loaded machine);
- ``sgemm_nt(fn, M, N, K, a, lda, b, ldb, c, ldc)``: c = a @ b.T for row-major float32
  (M, K) and (N, K) blocks starting at the first element of each array (the pair's input
  projections from W_ih's rows, _loops_in.PAIR_IN), through the cblas_sgemm with 64-bit
  integers at address ``fn`` (blas.sgemm_address: NumPy's own OpenBLAS, on the thread
  count it has; the pair holds it to one). An address passed in, not bound at compile
  time, so that numba's disk cache keeps the kernels.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .pair import X86_64


def _element(context, builder, arrty, arr, idx):
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


def _int64_array(a):
    return isinstance(a, types.Array) and a.dtype == types.int64 and a.ndim == 1


def _rmw(op):
    def typer(typingctx, arr, idx, val):
        if not (_int64_array(arr) and isinstance(idx, types.Integer)
                and isinstance(val, types.Integer)):
            return None

        def codegen(context, builder, sig, args):
            ptr = _element(context, builder, sig.args[0], args[0], args[1])
            v = context.cast(builder, args[2], sig.args[2], types.int64)
            return builder.atomic_rmw(op, ptr, v, "seq_cst")
        return types.int64(arr, idx, val), codegen
    typer.__name__ = f"atomic_{op}"
    return intrinsic(typer)


atomic_add = _rmw("add")
atomic_xchg = _rmw("xchg")


@intrinsic
def atomic_load(typingctx, arr, idx):
    if not (_int64_array(arr) and isinstance(idx, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element(context, builder, sig.args[0], args[0], args[1])
        return builder.load_atomic(ptr, "acquire", 8)
    return types.int64(arr, idx), codegen


@intrinsic
def atomic_cas(typingctx, arr, idx, old, new):
    if not (_int64_array(arr) and all(isinstance(t, types.Integer) for t in (idx, old, new))):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element(context, builder, sig.args[0], args[0], args[1])
        o = context.cast(builder, args[2], sig.args[2], types.int64)
        n = context.cast(builder, args[3], sig.args[3], types.int64)
        pair = builder.cmpxchg(ptr, o, n, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 0)
    return types.int64(arr, idx, old, new), codegen


@intrinsic
def ticks(typingctx):
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(64), []), "llvm.readcyclecounter")
        return builder.call(fn, [])
    return types.int64(), codegen


@intrinsic
def address(typingctx, arr):
    if not isinstance(arr, types.Array):
        return None

    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.ptrtoint(ary.data, ir.IntType(64))
    return types.int64(arr), codegen


def _pointer_at(dtype):
    def typer(typingctx, addr):
        if not isinstance(addr, types.Integer):
            return None
        sig = types.CPointer(dtype)(addr)

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
        return sig, codegen
    typer.__name__ = typer.__qualname__ = f"{dtype}_at"
    return intrinsic(typer)


f32_at = _pointer_at(types.float32)
i64_at = _pointer_at(types.int64)


@intrinsic
def cpu_relax(typingctx):
    def codegen(context, builder, sig, args):
        if X86_64:
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), []), "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


@intrinsic
def sched_yield(typingctx):
    def codegen(context, builder, sig, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


def _float32_array(a):
    return isinstance(a, types.Array) and a.dtype == types.float32


@intrinsic
def sgemm_nt(typingctx, fn, M, N, K, a, lda, b, ldb, c, ldc):
    ints = (fn, M, N, K, lda, ldb, ldc)
    if not (all(isinstance(t, types.Integer) for t in ints)
            and all(_float32_array(t) for t in (a, b, c))):
        return None
    sig = types.void(fn, M, N, K, a, lda, b, ldb, c, ldc)

    def codegen(context, builder, signature, args):
        i32, i64, f32 = ir.IntType(32), ir.IntType(64), ir.FloatType()
        vp = ir.IntType(8).as_pointer()
        ty = signature.args

        def data(k):
            ary = context.make_array(ty[k])(context, builder, args[k])
            return builder.bitcast(ary.data, vp)

        def int64(k):
            return context.cast(builder, args[k], ty[k], types.int64)
        cblas = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, f32, vp,
                                                i64, vp, i64, f32, vp, i64])
        f = builder.inttoptr(int64(0), cblas.as_pointer())
        row_major, no_trans, trans = i32(101), i32(111), i32(112)
        builder.call(f, [row_major, no_trans, trans, int64(1),
                         int64(2), int64(3), f32(1.0), data(4), int64(5), data(6),
                         int64(7), f32(0.0), data(8), int64(9)])
        return context.get_dummy_value()
    return sig, codegen

