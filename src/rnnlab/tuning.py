"""Every size threshold that picks a compute path, in one place, each with what was
measured to set it (2-core x86-64, NumPy 2.4 with OpenBLAS 0.3.31, numba 0.68, float32;
BENCHMARKS.md and docs/benchmarks-history.md have the runs). They choose between paths
that compute the same numbers (to rounding); none changes a result.
"""

#: N * H up to which the NumPy GRU / LSTM steps run their sigmoid over whole contiguous
#: rows (more arithmetic, fewer ufunc calls): at batch 1-16, H <= 64, one call on a
#: column slice costs ~1 us more than on a row, which outweighs the extra elements.
SMALL_GATES = 1024

#: N * G*H * H_out per step up to which a compiled whole-sequence loop (its own
#: recurrent matmul) beats OpenBLAS's matmul plus compiled gates; above it BLAS won with
#: the loops' products before the register tiles (LSTM (100, 64, 256, 256): 1 << 22 per
#: step, BLAS 1.3x faster); now the loops take larger calls too where each weight serves
#: enough rows (TILE_ROW_WEIGHTS).
COMPILED_LOOP_MAX = 1 << 20
#: The same for a recorded call (training) and its BPTT where the pair can run: their
#: compiled loops then run a batch's rows in halves, one per core (sequence/halves.py),
#: and win above COMPILED_LOOP_MAX too. Forward + backward, compiled in halves / the
#: driver's loop, ms: LSTM (100, 8, 256, 256) 19.5-23 / 30; (100, 64, 256, 256) 136 /
#: 150; GRU 94.5 / 105; LSTM (100, 16, 512, 512) 130 / 141; GRU (100, 24, 128, 128)
#: 10.5 / 13.7 (BENCHMARKS.md, "Training on the compiled loops at larger sizes").
COMPILED_RECORD_MAX = 1 << 25

#: Weights of W_hh from which OpenBLAS splits a matrix-vector product over its threads
#: (0.3.31: between 393k and 524k); there, for a few rows, one product per row with W in
#: torch's layout beats one matrix product (LSTM W_hh at H = 512, batch 1: 40 vs ~140 us
#: per step).
BLAS_ROWS = 1 << 19

#: Rows up to which products per row (BLAS_ROWS) and the threaded step win.
FEW_ROWS = 4

#: The input projection of 2 to PROJECT_FEW_ROWS rows (T * N) into more than
#: PROJECT_FEW_MIN outputs (rows x columns of one product) is the compiled
#: _compiled.project_few, not OpenBLAS: 0.3.31 runs such a product through its small-matrix
#: kernel up to 1024 outputs, above it packs all of W_ih however few the rows (one thread,
#: matmul / compiled, us: W_ih (1024, 256) M = 2 145 / 35, 4 150 / 43, 8 171 / 67, 16 210
#: / 172, 24 248 / 254, 32 290 / 291; (2048, 512) M = 2 585 / 138, 16 845 / 652; a pair's
#: half of LSTM H 512, products per gate (256 columns), M = 4 42 / 56, 6 331 / 101, 16
#: 421 / 292; of LSTM H 256 (128 columns) M = 8 22 / 28, 12 94 / 60). On OpenBLAS's two
#: threads (the one-thread path's projection) (1024, 256) M = 8 92 us, 16 119: 12 rows.
#: Whole calls, fresh processes alternated 4 times, old / new, us: LSTM (T, 1, 256, 128)
#: T = 3 134 / 73, 4 102 / 70, 8 124 / 103, 12 162 / 132; GRU (T, 1, 512, 512) on the pair
#: T = 6 526 / 439, 8 630 / 482, 12 734 / 581 (the same code read 0.74-1.2x: noise).
PROJECT_FEW_ROWS = 12
PROJECT_FEW_MIN = 1024

#: Bytes of input projections _loops_in.SEQ_IN_ROWS makes at once (the next C steps'
#: rows: C = SEQ_IN_CHUNK // (rows * max(G*H, I) * 4), at least 1). One step at a time, each step
#: read W_ih^T then W_hh^T, and where both do not fit a core's L2 together (LSTM H 128:
#: 2 x 256 KB against Zen 3's 512 KB) each evicted the other every step. Two threads of
#: 8 rows at once, LSTM (100, 8, 128, 128), us a step, 10th / 50th percentile, one step /
#: 64 KB / 256 KB / 1 MB: 30.6 / 35.8, 28.9 / 31.9, 29.3 / 32.3, 30.2 / 34.6 (another run
#: 30.9 / 32.4, 30.9 / 32.7, 30.9 / 31.7: the gain comes in the VM's slow phases); LSTM
#: (100, 32, 256, 256) one step / 256 KB (C = 2) 472 / 535, 443 / 510; (50, 8, 32, 32)
#: (C = 16) and (30, 64, 512, 512) (C = 1) unchanged (BENCHMARKS.md, "Session 31").
SEQ_IN_CHUNK = 1 << 18

#: W (G*H x K) weights from which a product per row beats one matrix product for 3-4
#: rows (OpenBLAS); with 1-2 rows the product per row always wins.
PER_ROW_MIN = 1 << 15
PER_ROW_ALWAYS = 2

#: G*H * H_out above which one [x | h] @ [W_ih; W_hh]^T BLAS call beats the compiled
#: single-step loop for RNN / LSTM steps (LSTM H = 256: 36 vs 42 us).
JOINT_WINS = 1 << 17

#: Weights of a layer (G*H * (I + H_out)) from which set_num_threads(k) / freeze(threads=k)
#: split a step over threads (1 MB: below it the threads' start-up costs more than the
#: halved product saves); and units per thread at the least.
THREADED_MIN = 1 << 18
THREAD_UNITS = 32

#: Bytes from which and up to which a weight-sized buffer (a recorded call's copy of W_ih
#: / W_hh, its W_hh^T, backward's dW_ih / dW_hh before they are added into the
#: gradients, and a gradient that zero_grad() drops while nothing else holds it) comes
#: from the module's pool and stays there between calls. Fresh arrays of a few MB cost
#: page faults here (~1 ms per 4 MB): training at batch 1, LSTM (100, 1, 512, 512)
#: 24.2-27.8 -> 16.5-17.2 ms and GRU 18.9-19.8 -> 12.4-12.7 with them pooled, LSTM with
#: zero_grad() every step 19-21 -> 16.2-16.6 (~1100-2100 faults a step before). Smaller
#: ones fault too, as glibc trims its heap's top after each call: LSTM (100, 1, 256, 256)
#: (1 MB matrices) 738 faults a step, 5.9-6.3 -> 4.8-4.9 ms pooled; GRU 4.2-4.9 -> 3.6-3.8;
#: LSTM (100, 1, 128, 128) 98 faults, 1.51 -> 1.24 ms. The compiled loops' forward-only
#: W_hh^T is leased in a buffer of W_hh's shape and given back when the loop is done, so
#: that the step's peak stays where it was (its own buffer beside the pool's free dW
#: raised an accumulating step's peak from 4x to 5x the parameters). Larger than the
#: maximum, fresh each call: the faults weigh less beside the arithmetic, and a huge
#: layer keeps 2x its parameters between calls (BENCHMARKS.md, "Page faults").
POOL_WEIGHTS_MIN = 1 << 16
POOL_WEIGHTS_MAX = 1 << 26

#: x.size * H below which an unrecorded call allocates plainly instead of leasing pool
#: buffers (a batch-1 step: the lease's bookkeeping costs more than the page faults).
POOL_MIN = 1 << 16

#: A transposed copy of a matrix of this many elements or more goes by blocks of rows,
#: each about TRANSPOSE_BLOCK_BYTES (what L1 holds), 16 to 64 rows. NumPy's own
#: transposing copy, then 64-row blocks, 16-row blocks, this rule, float32, us:
#: 512 x 128 40 / 28 / 46 / 28; 128 x 512 148 / 139 / 32 / 32; 1024 x 256 340 / 241 / 171 /
#: 135 (32 rows); 2048 x 512 3544 / 2239 / 967 / 967; 512 x 2048 2992 / 3258 / 1041 / 1041;
#: 4096 x 1024 29547 / 12207 / 4763 / 4763 (BENCHMARKS.md, "Page faults").
TRANSPOSE_BLOCKED = 1 << 16
TRANSPOSE_BLOCK_BYTES = 1 << 15

#: W_hh weights (G*H * H_out) from which an unrecorded sequence of PAIR_ROWS rows runs
#: on two threads (sequence/pair.py): LSTM (T, 1, 256, 256) 0.17 / 0.98 / 1.75 ms at T =
#: 5 / 50 / 100 against 0.47 / 1.20 / 2.12 on one; at 2^16 weights (RNN H 256, LSTM H
#: 128) the two were even within 10% either way at T = 5-100 (benchmarks/pair_steps.py).
PAIR_MIN = 1 << 17
PAIR_ROWS = 1
#: ... or of PAIR_LONG_MIN weights and PAIR_LONG_STEPS steps or more: with the pair's
#: projections in rows (2026-12-06) a long sequence wins there too. Fresh processes, 3
#: rounds, one / two threads, us: RNN (T, 1, 256, 256) T = 32 171-196 / 199-241, 48
#: 290-308 / 234-369, 64 344-372 / 270-308, 100 485-674 / 350-383, 200 862-954 / 593-623;
#: LSTM H 128 T = 64 363-380 / 365-473, 100 514-611 / 424-496, 200 858-963 / 680-690;
#: GRU H 128 (under 2^16) T = 100 389-434 / 345-491, 200 689-750 / 532-652; RNN H 128
#: (2^14) even to T = 400.
PAIR_LONG_MIN = 1 << 16
PAIR_LONG_STEPS = 64
#: ... and of PAIR_STEPS steps or more: one step on the pair (LSTM (1, 1, 256, 256)
#: ~0.16 ms; the worker seldom comes in time, and the calls' low shares then cool the pair
#: down for the longer calls after them) against 0.07 ms on one thread (BY_ROWS_STEPS).
#: With the input projection of a few rows compiled (PROJECT_FEW_ROWS) one thread wins to
#: 5 steps: fresh processes, 3 rounds, the pair / one thread, us: LSTM (T, 1, 256, 256) T
#: = 2 170-215 / 110-111, 4 203-286 / 149-159, 6 226-308 / 206-232, 8 243-348 / 260-354,
#: 12 266-421 / 343-386; GRU H 256 T = 2 101-104 / 89-90, 4 130-163 / 119-123, 8 172-295 /
#: 189-206; GRU H 512 even at T = 2-8 (T = 6 415-479 / 444-512).
PAIR_STEPS = 6

#: Unrecorded calls of up to BY_ROWS_STEPS steps of one row (BY_ROWS_FEW steps of up to
#: FEW_ROWS rows) on the compiled loop read W_hh itself by rows, not a transposed copy
#: made per call. One thread, LSTM (T, 1, 256, 256), rows / copy, us: T = 1 73 / 415 (a
#: plain transposing copy then), 2 166 / 321, 8 274 / 412, 32 793 / 815, 64 1481 / 1376;
#: H 128: rows faster to T = 200; (T, 4, 256, 256): T = 2 270 / 378, 8 835 / 741.
BY_ROWS_STEPS = 32
BY_ROWS_FEW = 2

#: Weights of W_hh (G*H * H_out) per row of the batch up to which a compiled loop also
#: takes calls above COMPILED_LOOP_MAX and COMPILED_RECORD_MAX (kernels.kernel_for): its
#: products in register tiles (sequence/_tiles.py) at ~57 GMAC/s a core beat OpenBLAS's
#: (~45-50 on one thread; the driver's loop of two-thread products and one-thread gates
#: less), and the rows in halves, each thread reading all of W_ih and W_hh every step,
#: pay for that reading when each weight serves enough rows. Above it (fewer rows per
#: weight), a batch of more than FEW_ROWS rows and more than PAIR_GEMM_MIN N * G*H *
#: H_out multiply-adds a step runs on the pair by halves of the units instead, each
#: thread's half of W_hh and W_ih staying near its core (linalg.gemm_rows; the same
#: register tiles per step). Unrecorded, ms, rows in halves / units on the pair
#: (BENCHMARKS.md, "Register tiles"): LSTM H 256, N = 8 11.0 / 7.4, 16 9.6 / 10.6, 32
#: 18.5 / 19.9, 64 35.4 / 38.7; LSTM H 512, N = 8 38.7 / 20.7, 16 39.7 / 38.2, 32 82.8 /
#: 79.7, (200, 128) 595 / 615; LSTM (100, 5, 384, 384) 19.9 / 8.7; LSTM H 128, N = 32 5.1
#: / 7.3, 64 11.6 / 15.3; GRU (100, 64, 256, 256) 27.2 / 32.1, (100, 16, 512, 512) 35.1 /
#: 30.0. Up to FEW_ROWS rows neither: the driver's loop (LSTM (100, 4, 512, 512) 18.7 ms
#: there, 36.9 in halves).
TILE_ROW_WEIGHTS = 1 << 14
PAIR_GEMM_MIN = COMPILED_LOOP_MAX
#: ... and of PAIR_GEMM_STEPS steps or more: each call packs the halves of W_hh (~0.3 ms
#: at LSTM H 256 when measured; each thread its half since, ~0.1 ms each), which a few
#: steps do not pay back (LSTM (T, 64, 256, 256): 0.90 / 0.61 ms at T = 1, 1.35 / 1.27 at
#: 2, 2.2 / 2.2 at 4, 3.85 / 4.2 at 8; not measured again).
PAIR_GEMM_STEPS = 8

#: Pauses a thread of the pair waits for the other to claim its half of a step before
#: taking it too (a few microseconds: the other thread is normally there within one).
PAIR_STEAL = 100

#: When the worker took fewer than PAIR_LOW of the halves in two calls running (no core:
#: OpenBLAS's threads spin ~0.1 s after each threaded call, or the machine is busy), the
#: pair stays off for PAIR_COOL seconds (LSTM (100, 1, 256, 256) with a threaded (256,
#: 4000) product after each call: 3.1 ms with the pair regardless, 2.0 without; with the
#: cool-down, median 1.7 ms, 90th percentile 2.9 ms, 2.2 without).
PAIR_LOW = 0.2
PAIR_COOL = 0.05

#: A call split between the pair's threads (run_both, a batch's halves: pair_step.halves)
#: counts low for the cool-down when the caller waited for the worker's half longer than
#: PAIR_WAIT_SHARE of its own half's time: from there the two halves one after the other
#: on the caller's thread would have been as fast. Half its own time (until session 27)
#: turned the pair off while one CPU ran 1.5x slower than the other for seconds (this
#: VM's phases), and the halves then ran one after the other: LSTM (100, 16, 128, 128)
#: training 13.0 ms a call against 9.5-10.6 with the pair (BENCHMARKS.md).
PAIR_WAIT_SHARE = 1.0

#: Seconds the pair's worker spins for the next job after a run_both job asking for it
#: (a batch split in halves, sequence/driver.py), and that the caller spins for the
#: worker's half before sleeping: a wake through the job queue costs ~30 us here.
PAIR_SPIN = 300e-6

#: After a batch-1 sequence on the pair (pair_step.pair_in) the worker spins for the next
#: call PAIR_SPIN or PAIR_SPIN_SHARE of the call's own time, the longer: between two
#: back-to-back LSTM (100, 1, 512, 512) calls (4.5 ms) rnnlab's Python took 181 us
#: (median; 90th percentile 272, 6% over 300: the caches cold after the call), and 10-15%
#: of the calls found the worker gone and ran alone (8.9 ms); with a 3 ms spin, 1 in 300.
PAIR_SPIN_SHARE = 0.25

#: Recurrent multiply-adds of a call (T * N * G*H * H_out) from which a recorded call of 3
#: rows or more on the compiled loop runs its rows in two halves, one per thread of the
#: pair (measured in BENCHMARKS.md).
ROWS_SPLIT_MIN = 1 << 23

#: An unrecorded call of 3 rows or more on the compiled loop runs _loops_in.SEQUENCE_IN, its
#: rows in two halves met without the GIL (sequence/pair_step.py, halves), from
#: HALVES_MIN recurrent multiply-adds (T * N * G*H * H_out) and HALVES_STEP_MIN gate
#: outputs a step (N * G*H); below either, one thread (measured in BENCHMARKS.md).
HALVES_MIN = 1 << 20
HALVES_STEP_MIN = 1536

#: A recorded call in halves does its serial work (W_hh's panels, W_ih's snapshot, the
#: previous states, the bias gradients' sums) on the caller beside the worker's half, which
#: starts 25-35 us late, up to BESIDE_MAX bytes of input projections (T * N * G*H * 4);
#: above, after the hand-over: LSTM (100, 16, 128, 128) training (3.3 MB) 1.027x faster
#: beside, (100, 64, 256, 256) (26 MB) 2-5% slower (its copies and sums stream through
#: the L3 the worker's half reads W_hh's panels from). BENCHMARKS.md, "Work beside the
#: worker's late start".
BESIDE_MAX = 8 << 20

#: Recurrent multiply-adds of one direction (T * N * G*H * H_out) from which an unrecorded
#: bidirectional layer runs its two directions at once on the pair's two threads
#: (sequence/pair.py, run_both): measured in BENCHMARKS.md.
DIRECTIONS_MIN = 1 << 23

#: Weights of a layer (G*H * (I + H_out)) from which an unrecorded step of up to FEW_ROWS
#: rows runs on the pair's two threads (sequence/pair_step.py; measured in BENCHMARKS.md);
#: PAIR_STEP_SPIN: seconds the worker spins for the next step after serving one;
#: PAIR_STEP_LOW: steps running where the worker, spinning, left its half to the caller
#: (or the caller waited PAIR_STEP_LONG seconds for it) before the pair cools down, for
#: PAIR_STEP_COOL * 2^k seconds the k-th time running (k up to PAIR_STEP_BACKOFF): with
#: 50 ms, one passing hiccup (8 steps the worker missed) cost ~2000 steps on one thread
#: (LSTM H 128, 2 layers: 30 us per step in place of 24).
PAIR_STEP_MIN = 1 << 17
PAIR_STEP_SPIN = 100e-6
PAIR_STEP_LOW = 8
PAIR_STEP_LONG = 50e-6
PAIR_STEP_COOL = 0.005
PAIR_STEP_BACKOFF = 6

#: Vector width (bits) the compiled sequence loops ask LLVM to prefer for what it
#: vectorises itself (units, bias rows, copies, the batch-1 dot products): _compiled.wide,
#: called first in SEQUENCE, SEQUENCE_IN, SEQUENCE_BACK, PAIR_BATCH, STEP, BACK_STEP, CELL
#: (lane by lane: the same bits at any width, tests/test_kernels.py) and the pair's
#: SEQUENCE_PAIR and PAIR_IN (their dot products sum in any order: float32 rounding apart,
#: 4.5e-8 at LSTM(64, 256)); not ROWS / ROWS_ONE (batch-1 steps: H 64 8.4 -> 9.1 us). 0:
#: LLVM's own choice (256 on Intel's AVX-512 cores; 512 on AMD's znver4 already, where
#: this changes nothing: the same code, session 21). Intel Xeon, session 20,
#: ms, 512 / default: LSTM (100, 16, 128, 128) inference 1.68-1.75 / 1.88-1.95, (50, 16,
#: 32, 32) 0.132-0.156 / 0.141-0.153, GRU 0.115-0.118 / 0.135-0.146; batch 1 LSTM (100,
#: 1, 256, 256) 0.83 / 0.92, GRU (100, 1, 512, 512) 2.26 / 2.39 (BENCHMARKS.md).
WIDE_VECTORS = 512

#: How the register tiles (sequence/_tiles.py) read b, by the CPU numba compiles for
#: (LLVM's name). On FAST_FMA_CPUS (Intel's AVX-512 server cores, two 512-bit multiply-add
#: units on most: the tiles' multiply-adds outrun L2 and fill L1) the tiles that stream b
#: from L2 (the first 8-row block of each panel, and the 4-row tiles) ask for its row
#: TILE_AHEAD rows ahead (llvm.prefetch: a hint, no bits change), and 8-row tiles take b
#: by TILE_KC rows (32 KB of a panel, in L1 while every block passes; the same bits);
#: elsewhere neither (0, 0). Measured on two machines (BENCHMARKS.md). Intel Xeon
#: (sapphirerapids), session 20, products alone, us, ahead / not: (8, 256) x (256, 1024)
#: 26.3-28.9 / 31-36, (12, 256) x (256, 1024) 41-44 / 50-51; by 256 / whole: (64, 512) x
#: (512, 1024) 434-459 / 453-484. AMD EPYC (znver4: one 512-bit multiply-add a cycle, in
#: two 256-bit halves; the tiles at that peak), session 21, the other way: ahead / not,
#: (8, 256) x (256, 1024) 39.1-44.7 / 36.3-37.5, (8, 128) x (128, 512) 9.7-10.7 /
#: 9.1-9.5, calls (ms) LSTM (100, 16, 128, 128) inference 2.95 / 2.72, GRU 2.48 / 2.13,
#: LSTM (100, 64, 256, 256) 35.7 / 33.4; by 256 / whole, (64, 512) x (512, 1024) 634 /
#: 615, (64, 1024) x (1024, 1024) 1246 / 1192.
FAST_FMA_CPUS = frozenset({
    "skylake-avx512", "cascadelake", "cooperlake", "icelake-server", "sapphirerapids",
    "emeraldrapids", "graniterapids", "graniterapids-d", "diamondrapids"})
TILE_AHEAD = 8
TILE_KC = 256


def tile_plan(cpu):
    """(rows ahead, rows of b at a time) for the tiles on ``cpu`` (LLVM's name):
    (TILE_AHEAD, TILE_KC) on FAST_FMA_CPUS, else (0, 0): neither."""
    return (TILE_AHEAD, TILE_KC) if cpu in FAST_FMA_CPUS else (0, 0)


#: The register tiles' shapes (sequence/_tiles.py): (rows, vectors of 16 float32 columns)
#: of the tiles for blocks of many rows, and for 4, 2 and 1 rows, by the vector registers
#: of the CPU numba compiles for. AVX-512 (32 registers of 16 lanes): 16 vectors of sums,
#: 8 x 32, 4 x 64, 2 x 128, 1 x 256 (the session-21 measurements above). AVX2 alone (16
#: registers of 8 lanes, two to a vector of 16): those tiles need 32 for their sums and
#: spill them (session 30, AMD EPYC Zen 3, `znver3`: 8 x 32 ran at 32 GF/s, OpenBLAS's
#: one thread at 78); at most 6 vectors (12 registers, b's and a's values in the rest):
#: one thread, (M, 256) x (256, 1024) in panels, us: M = 32 (blocks) 8 x 32 736, 4 x 16
#: 215, 5 x 16 222, 6 x 16 172 (OpenBLAS 240); M = 8 8 x 16 81, 4 x 16 54 (6 x 16 40 for 6
#: rows); M = 4 4 x 32 45, 4 x 16 32; M = 2 2 x 16 25, 2 x 32 18, 2 x 48 38, 2 x 64 73; M
#: = 1 1 x 16 22, 1 x 32 17, 1 x 64 18, 1 x 96 16, 1 x 128 16 (scratch tiles2.py).
TILES_AVX512 = ((8, 2), (4, 4), (2, 8), (1, 16))
TILES_AVX2 = ((6, 1), (4, 1), (2, 2), (1, 4))


def tile_shapes(avx512):
    """The four tiles' (rows, vectors) for a CPU with (True) or without AVX-512."""
    return TILES_AVX512 if avx512 else TILES_AVX2
