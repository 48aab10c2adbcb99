"""The compiled loops' matrix products, c += a @ b in float32, as register tiles: LLVM
vector code written out (llvmlite's IR builder in a numba intrinsic), because numba's
loops keep their sums in memory.

A tile is MR rows of c by NR = 16 * NV columns, held in MR * NV vector registers for
the whole pass over k: each k loads NV vectors of b's row k and one value of each of
a's MR rows (broadcast), and adds their products by fused multiply-adds. The sums of
the old loops (_compiled._project2: two rows of c per pass, in memory) read and wrote
c for every four k and re-read b from L2 for every two rows: ~41 GMAC/s a core here;
the tiles of 8 x 32 ~57 (BENCHMARKS.md, "Register tiles"). Fewer rows take wider tiles
(4 x 64, 2 x 128, 1 x 256: 16 sums in registers always): with 2 sums a row of one row
waited on the multiply-adds' latency and read b in 128-byte runs a page apart, 3.5
GMAC/s against 17.7. That is with AVX-512's 32 registers; with AVX2's 16 the tiles are
6 x 16, 4 x 16, 2 x 32, 1 x 64 (tuning.tile_shapes: the others spill their sums).

Numbers: every element is c + a[n, 0] b[0, j] + a[n, 1] b[1, j] + ..., one correctly
rounded fused multiply-add after another in k order, whichever tile (or the scalar
loop for the last columns) computes it: the bits do not depend on how the rows or
columns are split (between threads, halves, tiles).

- ``product(c, a, b)``: c (M, J) += a (M, K) @ b (K, J); rows of each array contiguous
  (the loops' arrays are; another layout takes the scalar loop, the same bits). b may
  come in panels of 32 columns (linalg.in_panels: (P*K, 32), panel p's K rows holding
  b's columns 32p:32p+32; told apart by its 32 columns where c has more): a tile then
  reads 128-byte rows one after another, not 128 bytes from each of K rows a row of b
  apart (a new page every 1-8 k: LSTM (200, 128, 512, 512) 604 -> 528 ms);
- ``product_from(c, d, a, b)``: c = d + a @ b, the sums started from d's values (the
  same bits as copying d into c first; the loops' bias rows and projections);
- ``fma32(x, y, z)``: x * y + z rounded once (llvm.fma), the scalar loop's step.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from ..tuning import tile_plan, tile_shapes

LANES = 16                          # float32 lanes in a vector (one AVX-512 register)


def _f32_2d(t):
    return isinstance(t, types.Array) and t.dtype == types.float32 and t.ndim == 2


def _tile(MR, NV, ahead=0, check=None):
    """The intrinsic c[m:m+MR, j:j+16*NV] = d[m:m+MR, j:j+16*NV] + a[m:m+MR] @ b[:,
    j:j+16*NV] (K = a's columns; rows of each array contiguous: the caller checks; d may
    be c itself); b's column j starts (j >> 5) * ps + (j & 31) elements into its data (ps
    = 32: plain; ``product``). ahead > 0: each k also asks for b's row k + ahead (its
    cache lines, llvm.prefetch: a hint, never a fault past b's end), for tiles that
    stream b from L2. ``check`` (_kept.compare_run): seven more arguments (wv, bv, wo,
    bo, n, sh, acc), and the tile also compares n runs of 16 int32 of wv from wo on with
    bv's from bo on, the i-th at k = i << sh (among the multiply-adds), and ORs their XOR
    into acc (16 int32), by the code ``check`` emits into the k loop."""
    NR = LANES * NV

    def typer(typingctx, c, d, a, b, m, j, ps):
        if not (_f32_2d(c) and _f32_2d(d) and _f32_2d(a) and _f32_2d(b) and all(
                isinstance(x, types.Integer) for x in (m, j, ps))):
            return None
        return types.void(c, d, a, b, m, j, ps), codegen

    def typer_check(typingctx, c, d, a, b, m, j, ps, wv, bv, wo, bo, n, sh, acc):
        if typer(typingctx, c, d, a, b, m, j, ps) is None or not all(
                isinstance(x, types.Array) and x.dtype == types.int32 and x.ndim == 1
                for x in (wv, bv, acc)) or not all(
                isinstance(x, types.Integer) for x in (wo, bo, n, sh)):
            return None
        return types.void(c, d, a, b, m, j, ps, wv, bv, wo, bo, n, sh, acc), codegen

    def codegen(context, builder, sig, args):
        f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)
        vec, ivec = ir.VectorType(f32, LANES), ir.VectorType(i32, LANES)
        vptr = vec.as_pointer()
        arrays = [context.make_array(sig.args[i])(context, builder, args[i])
                  for i in (0, 2, 3, 1)]                # c, a, b, d
        step = [builder.sdiv(cgutils.unpack_tuple(builder, x.strides)[0], i64(4))
                for x in arrays]                        # row strides in elements
        K = cgutils.unpack_tuple(builder, arrays[1].shape)[1]
        m0 = context.cast(builder, args[4], sig.args[4], types.int64)
        j0 = context.cast(builder, args[5], sig.args[5], types.int64)
        ps = context.cast(builder, args[6], sig.args[6], types.int64)
        c0 = builder.gep(arrays[0].data, [builder.add(builder.mul(m0, step[0]), j0)])
        d0 = builder.gep(arrays[3].data, [builder.add(builder.mul(m0, step[3]), j0)])
        a0 = builder.gep(arrays[1].data, [builder.mul(m0, step[1])])

        def at_b(v):                # column j0 + 16 v of b's row 0: in its panel
            col = builder.add(j0, i64(v * LANES))
            return builder.gep(arrays[2].data, [builder.add(
                builder.mul(builder.ashr(col, i64(5)), ps), builder.and_(col, i64(31)))])
        b0 = [at_b(v) for v in range(NV)]
        fma = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vec, [vec] * 3), "llvm.fma.v16f32")

        def at_c(r, v, base=c0, s=step[0]):
            ptr = builder.gep(base, [builder.add(builder.mul(i64(r), s), i64(v * LANES))])
            return builder.bitcast(ptr, vptr)
        first = [[builder.load(at_c(r, v, d0, step[3]), align=4) for v in range(NV)]
                 for r in range(MR)]
        if check:                   # the compare's running OR: acc's 16 int32
            seen_at = builder.bitcast(context.make_array(sig.args[13])(
                context, builder, args[13]).data, ivec.as_pointer())
            seen0 = builder.load(seen_at, align=4)
        before = builder.block
        loop = builder.append_basic_block("tile.k")
        done = builder.append_basic_block("tile.done")
        builder.cbranch(builder.icmp_signed(">", K, i64(0)), loop, done)

        builder.position_at_end(loop)
        k = builder.phi(i64)
        acc = [[builder.phi(vec) for _ in range(NV)] for _ in range(MR)]
        seen = builder.phi(ivec) if check else None
        kb = builder.mul(k, step[2])
        bv = [builder.load(builder.bitcast(builder.gep(b0[v], [kb]), vptr), align=4)
              for v in range(NV)]
        if ahead:
            kp = builder.mul(builder.add(k, i64(ahead)), step[2])
            for v in range(NV):
                prefetch(builder, builder.gep(b0[v], [kp]))
        undef, lane0 = ir.Constant(vec, ir.Undefined), ir.Constant(i32, 0)
        splat = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
        new = []
        for r in range(MR):
            x = builder.load(builder.gep(a0, [builder.add(builder.mul(i64(r), step[1]),
                                                          k)]))
            xs = builder.shuffle_vector(builder.insert_element(undef, x, lane0),
                                        undef, splat)
            new.append([builder.call(fma, [xs, bv[v], acc[r][v]]) for v in range(NV)])
        if check:
            seen_next = check(context, builder, sig, args, k, seen)
        k_next = builder.add(k, i64(1))
        end = builder.block
        k.add_incoming(i64(0), before)
        k.add_incoming(k_next, end)
        for r in range(MR):
            for v in range(NV):
                acc[r][v].add_incoming(first[r][v], before)
                acc[r][v].add_incoming(new[r][v], end)
        if check:
            seen.add_incoming(seen0, before)
            seen.add_incoming(seen_next, end)
        builder.cbranch(builder.icmp_signed("<", k_next, K), loop, done)

        builder.position_at_end(done)
        last = [[builder.phi(vec) for _ in range(NV)] for _ in range(MR)]
        seen_last = builder.phi(ivec) if check else None
        for r in range(MR):                 # (a block's phis come before all else)
            for v in range(NV):
                last[r][v].add_incoming(first[r][v], before)
                last[r][v].add_incoming(new[r][v], end)
        for r in range(MR):
            for v in range(NV):
                builder.store(last[r][v], at_c(r, v), align=4)
        if check:
            seen_last.add_incoming(seen0, before)
            seen_last.add_incoming(seen_next, end)
            builder.store(seen_last, seen_at, align=4)
        return context.get_dummy_value()
    fn = typer_check if check else typer
    fn.__name__ = fn.__qualname__ = (f"tile_{MR}x{NR}" + ("p" if ahead else "")
                                     + ("c" if check else ""))
    return intrinsic(fn)


def prefetch(builder, ptr):
    """Emit a request for the cache line at ``ptr`` (llvm.prefetch: read, high locality,
    data; a hint, never a fault)."""
    i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(
        ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
    builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])


@intrinsic
def fma32(typingctx, x, y, z):
    if not all(t == types.float32 for t in (x, y, z)):
        return None

    def codegen(context, builder, sig, args):
        f32 = ir.FloatType()
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(f32, [f32] * 3), "llvm.fma.f32")
        return builder.call(fn, list(args))
    return types.float32(x, y, z), codegen


def _target_cpu():
    """The CPU numba compiles for, as LLVM names it (NUMBA_CPU_NAME, else the host's):
    part of the key of numba's cache, so kernels cached for another CPU are not used."""
    from llvmlite import binding
    from numba.core import config
    return config.CPU_NAME or binding.get_host_cpu_name()


def _target_avx512():
    """Whether the CPU numba compiles for has AVX-512 (its 32 vector registers): the
    features numba compiles with (NUMBA_CPU_FEATURES, else the host's)."""
    from numba.core import codegen, config
    features = config.CPU_FEATURES
    if features is None:
        features = codegen.get_host_cpu_features()
    return "+avx512f" in features.split(",")


#: rows of b a tile that streams b from L2 asks for ahead of the one it reads (the first
#: block of each panel, and the 4-row tiles; 0: none), and rows of b the blocks' tiles
#: take at a time (``product_from``; 0: all): tuning.tile_plan says on which CPUs either
#: pays, with what was measured. The sums go on in k order: the same bits.
AHEAD, KC = tile_plan(_target_cpu())
#: (rows, vectors) of the blocks' tiles and of the 4-, 2- and 1-row tiles: as many sums
#: as the CPU's vector registers hold beside b's and a's (tuning.tile_shapes)
(ROWS, NV), (_, NV4), (_, NV2), (_, NV1) = tile_shapes(_target_avx512())
COLS = LANES * NV                   # a block tile's columns

# each walk: its widest tile, then one of each narrower (the ones a CPU does not use are
# its widest again: never reached, the walks test NV, NV4, NV2, NV1 first)
tile_main = _tile(ROWS, NV)
tile_main16 = _tile(ROWS, 1) if NV > 1 else tile_main
tile_main_p = _tile(ROWS, NV, AHEAD) if AHEAD else tile_main
tile_4w = _tile(4, NV4, AHEAD)
tile_4x32, tile_4x16 = (_tile(4, 2, AHEAD), _tile(4, 1, AHEAD)) if NV4 > 1 else (tile_4w,) * 2
tile_2w = _tile(2, NV2)
tile_2x64, tile_2x32 = (_tile(2, 4), _tile(2, 2)) if NV2 > 2 else (tile_2w,) * 2
tile_2x16 = _tile(2, 1) if NV2 > 1 else tile_2w
tile_1w = _tile(1, NV1)
tile_1x128, tile_1x64 = (_tile(1, 8), _tile(1, 4)) if NV1 > 4 else (tile_1w,) * 2
tile_1x32, tile_1x16 = (_tile(1, 2), _tile(1, 1)) if NV1 > 1 else (tile_1w,) * 2

#: columns of a panel of b (``product``; linalg.PANEL is the same number on the Python
#: side, which must not import numba)
PANEL = 32


@njit(cache=True, inline="always")
def panel_rows(J, K):
    """Rows of b (K, J) in panels of PANEL columns (linalg.in_panels)."""
    return (J + PANEL - 1) // PANEL * K


#: compiled on their own and called (LLVM inlines them where it pays): inline="always"
#: would copy their numba IR into every loop that takes a product (compile time)
compiled = njit(cache=True, error_model="numpy")


@compiled
def _scalar(c, d, a, b, j_from, panels):
    """c[:, j_from:] = d[:, j_from:] + a @ b[:, j_from:], one fma32 after another in k
    order (b in panels of 32 columns, ``product``, when ``panels``)."""
    M, K = a.shape
    for n in range(M):
        for j in range(j_from, c.shape[1]):
            r, i = (((j >> 5) * K, j & 31) if panels else (0, j))
            s = d[n, j]
            for k in range(K):
                s = fma32(a[n, k], b[r + k, i], s)
            c[n, j] = s


@njit(cache=True, inline="always")   # (the two wrappers inlined: each compiled on
def product(c, a, b):                # its own cost ~0.9 s, BENCHMARKS.md "Cold start")
    """c += a @ b: float32 (M, J), (M, K), (K, J); see the module's docstring."""
    product_from(c, c, a, b)


@njit(cache=True, inline="always")
def product_from(c, d, a, b):
    """c = d + a @ b, d (M, J) float32 too (c itself, or an array c does not overlap):
    the sums start from d's values, no copy of d into c first (the same bits). Blocks of
    ROWS rows by COLS columns (8 x 32 with AVX-512, 6 x 16 with AVX2 alone), b's columns
    serving every block while in L1; the last rows by 4, 2, 1 in wider tiles (as many
    sums in registers as the CPU holds: fewer would wait on the fused multiply-adds'
    latency, and read b in shorter runs)."""
    product_by(c, d, a, b, KC)


@compiled
def product_by(c, d, a, b, kc):
    """``product_from``, the blocks' tiles taking b by kc rows at a time (0: all)."""
    M, J = c.shape
    # in panels, b's column j at row (j // 32) * K, column j % 32: a tile's vector at
    # column j starts (j >> 5) * ps + (j & 31) elements in; plain, ps = 32 (column j at j)
    panels = b.shape[1] == PANEL < J
    ps = a.shape[1] * (b.strides[0] // 4) if panels else PANEL
    if c.strides[1] != 4 or d.strides[1] != 4 or a.strides[1] != 4 or b.strides[1] != 4:
        _scalar(c, d, a, b, 0, panels)
        return
    mb = M - M % ROWS
    if ROWS < 8 and M % ROWS == 8 - ROWS and mb > 0:   # the last 8 rows in two 4-row
        mb -= ROWS                                      # tiles (AVX2's 6 + 2 rows: 1.17x)
    K = a.shape[1]
    if mb > 0:
        j = 0
        step = kc if kc > 0 else max(K, 1)
        while j + COLS <= J:        # by kc rows of b's columns (in L1 for all blocks)
            for k0 in range(0, max(K, 1), step):   # (K = 0: c = d all the same)
                ak, bk = a[:, k0:min(k0 + step, K)], b[k0:]
                for m in range(0, mb, ROWS):    # the sums go on from c's after the first
                    if k0 == 0 and m == 0:      # (the first block asks for b ahead)
                        tile_main_p(c, d, ak, bk, m, j, ps)
                    elif k0 == 0:
                        tile_main(c, d, ak, bk, m, j, ps)
                    elif m == 0:
                        tile_main_p(c, c, ak, bk, m, j, ps)
                    else:
                        tile_main(c, c, ak, bk, m, j, ps)
            j += COLS
        if NV > 1 and j + 16 <= J:
            for m in range(0, mb, ROWS):
                tile_main16(c, d, a, b, m, j, ps)
            j += 16
        if j < J:
            _scalar(c[:mb], d[:mb], a[:mb], b, j, panels)
    m = mb
    while m + 4 <= M:
        _four(c, d, a, b, m, ps, panels)
        m += 4
    if m + 2 <= M:
        _two(c, d, a, b, m, ps, panels)
        m += 2
    if m < M:
        _one(c, d, a, b, m, ps, panels)


# _four, _two and _one walk the columns alike, each with its own tiles (an intrinsic per
# rows x width: not values numba can pass or index): the widest (NV4, NV2, NV1 vectors),
# then one of each narrower. One walk dispatching on (rows, width) at run time measured
# slower on few rows (1 x 1024 columns 14.5 against 13.3 us, 3 rows 30 against 22-25).
@compiled
def _four(c, d, a, b, m, ps, panels):
    J, j = c.shape[1], 0
    while j + 16 * NV4 <= J:
        tile_4w(c, d, a, b, m, j, ps)
        j += 16 * NV4
    if NV4 > 2 and j + 32 <= J:
        tile_4x32(c, d, a, b, m, j, ps)
        j += 32
    if NV4 > 1 and j + 16 <= J:
        tile_4x16(c, d, a, b, m, j, ps)
        j += 16
    if j < J:
        _scalar(c[m:m + 4], d[m:m + 4], a[m:m + 4], b, j, panels)


@compiled
def _two(c, d, a, b, m, ps, panels):
    J, j = c.shape[1], 0
    while j + 16 * NV2 <= J:
        tile_2w(c, d, a, b, m, j, ps)
        j += 16 * NV2
    if NV2 > 4 and j + 64 <= J:
        tile_2x64(c, d, a, b, m, j, ps)
        j += 64
    if NV2 > 2 and j + 32 <= J:
        tile_2x32(c, d, a, b, m, j, ps)
        j += 32
    if NV2 > 1 and j + 16 <= J:
        tile_2x16(c, d, a, b, m, j, ps)
        j += 16
    if j < J:
        _scalar(c[m:m + 2], d[m:m + 2], a[m:m + 2], b, j, panels)


@compiled
def _one(c, d, a, b, m, ps, panels):
    J, j = c.shape[1], 0
    while j + 16 * NV1 <= J:
        tile_1w(c, d, a, b, m, j, ps)
        j += 16 * NV1
    if NV1 > 8 and j + 128 <= J:
        tile_1x128(c, d, a, b, m, j, ps)
        j += 128
    if NV1 > 4 and j + 64 <= J:
        tile_1x64(c, d, a, b, m, j, ps)
        j += 64
    if NV1 > 2 and j + 32 <= J:
        tile_1x32(c, d, a, b, m, j, ps)
        j += 32
    if NV1 > 1 and j + 16 <= J:
        tile_1x16(c, d, a, b, m, j, ps)
        j += 16
    if j < J:
        _scalar(c[m:m + 1], d[m:m + 1], a[m:m + 1], b, j, panels)


#: rows of a projection per pass (project): 8 blocks (64 rows with AVX-512) of x and of
#: out, and b, stay in a core's L2 (b's 32-column panels in L1) while every panel passes
PROJECT_ROWS = 8 * ROWS


@njit(cache=True, error_model="numpy", nogil=True)
def project(out, x, b):
    """out = x @ b, float32 (M, J), (M, K), (K, J) (the pair's input projections, each
    thread its half's units: b is W_ih's rows for them, transposed), by PROJECT_ROWS rows;
    without the GIL."""
    M = x.shape[0]
    for m in range(0, M, PROJECT_ROWS):
        e = min(m + PROJECT_ROWS, M)
        c = out[m:e]
        c[:] = 0
        product(c, x[m:e], b)
