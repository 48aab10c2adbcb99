"""Compiled kernels (numba) for float32 GRU and LSTM: optional.

At (T, N, H) = (50, 16, 32) a NumPy cell step is ~12 ufunc calls of ~1 us each forward and
~20 backward, and no layout change removes that (BENCHMARKS.md); a compiled loop does the
recurrent matmul and every gate of every unit in one pass. Three kinds, for the built-in
GRU and LSTM families in float32:

- whole time loops (``kernel_for``), without lengths or projections, when N * G*H * H_out
  is at most ``LIMIT`` (above it OpenBLAS's matmul wins): the forward loop of a direction,
  unrecorded (inference) or recording (training: it leaves the gate values and the cell's
  stored values exactly where the NumPy step leaves them, so either backward can read the
  record), and the BPTT loop (per step the cell's back and dh W_hh) when some gradient
  reaches h at the last step and no per-step norms are asked for. dW_ih, dW_hh, the
  biases and dx stay single BLAS calls after the loop, as on the NumPy path;
- one step and one back step (``cell_steps``) with the family's step / back arguments,
  for the driver's own loop everywhere else (lengths, projections, large sizes: BLAS
  does the matmuls, one compiled call the gates);
- the gates of one step from BLAS's products (``cell_for``, also for the two RNN
  families): ``layer.step`` and ``freeze()`` at batch 1-4, where one BLAS
  matrix-vector product per row reads the weights in torch's layout (stepper.py);
- the threaded batch-1 step of ``freeze(threads=k)`` and of ``layer.step`` after
  ``set_num_threads(k)`` (``rows_step_for``), opt-in.

Every machine without numba (``pip install 'rnnlab[fast]'``), float64, custom families,
and RNN everywhere but those gates run the NumPy path.

Numbers: the same equations as cells/gru.py and cells/lstm.py, in float32. pip's llvmlite
has no vector math library, so exp, sigmoid and tanh are our own (Cephes' float32
algorithms, _compiled.py), vectorised by LLVM: within a few float32 ulps of the exact
values, like NumPy's own float32 functions, but not always the same last bit; the results
equal the NumPy path's to float32 rounding (tests/test_kernels.py). NaN, inf and -0.0 go
through as in the NumPy path (sigmoid is exactly 0 where exp(-x) overflows, so that
0 * inf stays NaN in the gradients).

``RNNLAB_KERNELS=numpy`` in the environment turns them off. The first use in a process
imports numba (~0.5 s) and loads the family's compiled code from numba's cache next to
_compiled.py (the first use after installing compiles it: 5-7 s per family on 2 cores,
once; the threaded step another few seconds when first asked for). If numba is missing or fails to compile, the NumPy path runs; nothing else
changes.
"""
import os
from typing import Callable, NamedTuple

import numpy as np

from ..checks import check_int

LIMIT = 1 << 20          # N * G*H * H_out per step; above it OpenBLAS wins (BENCHMARKS.md)

KINDS = ("gru", "lstm")    # families with a compiled loop
CELL_KINDS = KINDS + ("rnn", "rnn_relu")     # and with compiled gates (cell_for)

_state = {"loaded": False, "kernels": None}


def kernel_for(fam, dtype, N, GH, H_out, has_proj, backward=False):
    """The compiled loop for this call, or None (use the NumPy path).

    Forward: kernel(gx, w_hh_t, b_rest, h0, c0, reverse, out, c_n, rows, store, record),
    every array C-contiguous float32 (see _compiled.lstm / _compiled.gru; always pass rows
    and record, so that one compiled signature serves every call; store is only written
    with record=True). backward=True: the BPTT loop, _compiled.lstm_back / gru_back."""
    if (dtype != np.float32 or has_proj or N == 0 or N * GH * H_out > LIMIT
            or fam.kind not in KINDS):
        return None                         # decided before numba is ever imported
    for k in _load(fam.kind):
        if fam is k.family:
            return k.backward if backward else k.forward
    return None


def cell_steps(fam, dtype, bias=None, b_rest=None):
    """(step, back, adds) for the driver's own time loop (lengths, projections, sizes above
    LIMIT: there BLAS does the matmuls): the family's NumPy step and back, or for float32
    GRU and LSTM the compiled ones, with the same arguments and results (one pass over
    the gates instead of ~12 ufunc calls forward, ~20 back). adds=True: the step adds
    ``bias`` (G*H,) to x W_ih^T and ``b_rest`` (H,) to GRU's h W_hn^T itself, so the caller
    must not (it saves a pass over all of gx); give both as C-contiguous arrays (zeros
    without bias) when asking for a step."""
    if dtype == np.float32 and fam.kind in KINDS:
        for k in _load(fam.kind):
            if fam is k.family:
                if k.step is None:
                    return fam.step, k.back or fam.back, False
                return k.step(bias, b_rest), k.back or fam.back, True
    return fam.step, fam.back, False


NO_STORE = np.zeros((1, 1, 1), np.float32)   # the store argument of unrecorded calls


def step_caches(fam, gx, store, out, h0, c0, reverse):
    """After a recording compiled forward (when a NumPy backward needs them): per step, the
    cache the NumPy step would have returned, as views of gx and store (LSTM: gates, c before the step, tanh(c'); GRU:
    gates, W_hn h + b_hn, h before the step), so the NumPy backward can run on it too."""
    T = gx.shape[0]
    H = store.shape[2] // fam.store
    caches = [None] * T
    for s in range(T):
        t = T - 1 - s if reverse else s
        p = t + 1 if reverse else t - 1
        if c0 is not None:
            caches[t] = (gx[t], c0 if s == 0 else store[p, :, :H], store[t, :, H:])
        else:
            caches[t] = (gx[t], store[t], h0 if s == 0 else out[p])
    return caches


def _load(kind=None):
    """The kernels, compiled for ``kind``'s family (None: all) on first use. A family whose
    kernels fail to compile is dropped (the NumPy path runs for it)."""
    if not _state["loaded"]:
        _state["loaded"] = True
        if os.environ.get("RNNLAB_KERNELS", "").lower() != "numpy":
            _state["kernels"] = _build()
    warm = _state.setdefault("warm", set())
    for k in list(_state["kernels"] or ()):
        if (kind is None or k.family.kind == kind) and k.family.kind not in warm:
            warm.add(k.family.kind)
            try:
                _warm(k)
            except Exception:                # unable to compile here: NumPy for it
                _state["kernels"] = [x for x in _state["kernels"] if x is not k]
    return _state["kernels"] or ()


def cell_for(fam, dtype):
    """The compiled gates of one step of N rows from BLAS's products, or None:
    cell(ax, ah, has_h, b_ih, b_hh, s, h_new, c_new) with ax = x W_ih^T (N, G*H) (without
    has_h: [x | h] [W_ih | W_hh]^T, LSTM and RNN), ah = h W_hh^T, b_ih, b_hh (G*H,) (zeros
    without bias), s = c (LSTM) or h (GRU); writes h_new (N, H) and LSTM's c_new. All
    C-contiguous float32 (see _compiled.lstm_cell / gru_cell / rnn_tanh_cell /
    rnn_relu_cell)."""
    if dtype == np.float32 and fam.kind in CELL_KINDS:
        for k in _load(fam.kind):
            if fam is k.family:
                return k.cell
    return None


def rows_step_for(fam, dtype, has_proj, size):
    """The compiled step of a few rows (``freeze(threads=k)``, and ``layer.step`` after
    set_num_threads(k), k >= 2; N <= ROWS_N) from the
    weights in torch's layout, its units split over numba's threads, or None. Called as
    step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, threads), all C-contiguous float32
    (biases zeros when absent; c, c_new any (N, H) array for GRU). size: the layer's weight
    count G*H * (I + H_out); below ROWS_MIN threads do not pay.

    Opt-in, never the default: numba's OpenMP threads spin after each step, and so do
    OpenBLAS's after its calls; a threaded BLAS call between two steps (a large output
    layer, say) then fights them for the cores (measured: a 1 x 256 @ 256 x 30000 matmul
    after each step, 0.7 ms per step single-threaded, 10 ms with threads)."""
    if (dtype != np.float32 or has_proj or fam.kind not in KINDS or size < ROWS_MIN):
        return None
    for k in _load(fam.kind):
        if fam is k.family:
            warm = _state.setdefault("warm_rows", set())
            if fam.kind not in warm and k.rows_step is not None:
                warm.add(fam.kind)
                _warm_rows(k.rows_step, fam.num_gates)
            return k.rows_step
    return None


def _warm_rows(step, G):
    """Compile the threaded step (not part of _warm: most processes never ask for it, and
    its first call starts numba's threads)."""
    f32 = np.float32
    h, w, b = np.zeros((2, 1), f32), np.zeros((G, 1), f32), np.zeros(G, f32)
    step(h, h, h, w, w, b, b, np.empty((2, 1), f32), np.empty((2, 1), f32), 1)


ROWS_N = 4               # rows up to which rows_step_for's step beats the time-loop kernel
ROWS_MIN = 1 << 18       # weights (1 MB) from which it does (BENCHMARKS.md, fourth pass)


def set_num_threads(n):
    """``rnnlab.set_num_threads(n)`` (torch's name): how many threads rnnlab's own compiled
    code may use. Today that is the threaded step of rows_step_for: ``layer.step`` at
    batch 1-4 (ROWS_N) of float32 GRU and LSTM layers of ROWS_MIN weights and more (H =
    256) splits each step over n of numba's threads, reading the live parameters, and
    ``layer.freeze()`` without ``threads=`` takes n. NumPy's BLAS keeps its own thread
    setting (threadpoolctl changes it). 1, the default: rnnlab starts no threads of its
    own. Opt-in for the reason rows_step_for gives."""
    _state["threads"] = check_int("set_num_threads: the number of threads", n)


def get_num_threads():
    """The setting of set_num_threads (1 unless changed)."""
    return _state.get("threads", 1)


class Kernels(NamedTuple):
    family: object
    forward: Callable        # the time loop of a direction (see kernel_for)
    backward: Callable       # the BPTT time loop
    step: Callable           # (bias, b_rest) -> one step with the family's step() arguments
    back: Callable           # one step back, the family's back() arguments
    rows_step: Callable      # one step from torch's layout, threaded (see rows_step_for)
    cell: Callable           # the gates from BLAS's products (see cell_for)


def _threaded(kernel, serial, lstm):
    """The rows step: ``kernel`` (numba threads) in this process when numba's threading
    layer is thread-safe (OpenMP or TBB), else and in forked children (GNU OpenMP aborts
    a child that forks from a process using it) ``serial``, in the calling thread (compiled
    on its first use). Threads: at most numba's thread count as the first call finds it
    (asking numba at every step cost ~2.5 us)."""
    import numba
    where = {}                              # "pid": the process whose threads may run it

    def step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, threads):
        if "pid" not in where:              # the first call: starts numba's threads
            kernel(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, 1, lstm)
            where["pid"] = (os.getpid() if numba.threading_layer() in ("omp", "tbb")
                            else None)
            where["most"] = numba.get_num_threads()
        elif os.getpid() == where["pid"]:
            P = min(threads, where["most"], max(1, h.shape[1] // 32))
            kernel(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, P, lstm)
        else:
            serial(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, 1, lstm)
    return step


def _lstm_cell(step_kernel, back_kernel):
    from ..cells import lstm

    def make_step(bias, b_rest):                         # b_rest: none for LSTM
        def step(gx, gh, h, c, h_new, store):
            H = c.shape[1]
            step_kernel(gx, gh, bias, np.ascontiguousarray(c), h_new, store)   # c: a slice
            return store[:, :H], (gx, c, store[:, H:])
        return step

    def back(dh_new, dc_new, cache, da, dgr):
        if dh_new is None:                               # no branch through h: NumPy's
            return lstm.back(dh_new, dc_new, cache, da, dgr)
        act, c, tc = cache
        dc_prev = np.empty(c.shape, c.dtype)
        c_, tc_ = np.ascontiguousarray(c), np.ascontiguousarray(tc)   # column slices: one
        back_kernel(dh_new, dh_new if dc_new is None else dc_new,     # compiled layout
                    dc_new is not None, act, c_, tc_, da, dc_prev)
        return None, dc_prev
    return make_step, back


def _gru_cell(step_kernel, back_kernel):
    from ..cells import gru

    def make_step(bias, b_rest):
        def step(gx, gh, h, c, h_new, store):
            step_kernel(gx, gh, bias, b_rest, h, h_new, store)
            return None, (gx, store, h)
        return step

    def back(dh_new, dc_new, cache, dgx, dgr):
        if dh_new is None:
            return gru.back(dh_new, dc_new, cache, dgx, dgr)
        act, hn, h = cache
        direct = np.empty(h.shape, h.dtype)
        back_kernel(dh_new, act, hn, h, dgx, dgr, direct)
        return direct, None
    return make_step, back


def _build():
    """[Kernels], not yet compiled; () when numba is missing."""
    from ..cells import gru, lstm, rnn
    try:
        from . import _compiled as C        # imports numba
    except Exception:                       # numba missing, or unusable here
        return []
    return [Kernels(lstm.FAMILY, C.lstm, C.lstm_back, *_lstm_cell(C.lstm_step, C.lstm_back_step),
                    _threaded(C.rows_step, C.rows_step_1, True), C.lstm_cell),
            Kernels(gru.FAMILY, C.gru, C.gru_back, *_gru_cell(C.gru_step, C.gru_back_step),
                    _threaded(C.rows_step, C.rows_step_1, False), C.gru_cell),
            Kernels(rnn.TANH, None, None, None, None, None, C.rnn_tanh_cell),   # the cell
            Kernels(rnn.RELU, None, None, None, None, None, C.rnn_relu_cell)]   # only


def _warm(k):
    """Compile (or load from numba's cache) a family's kernels for the argument types the
    driver and the steppers pass, by running each once on a tiny input, so that no call
    compiles mid-run. The first time after installing: 5-7 s per family on 2 cores."""
    fam = k.family
    f32 = np.float32
    G, S = fam.num_gates, fam.store
    z, gx = np.zeros((2, 1), f32), np.zeros((2, 2, G), f32)
    out, store = np.empty((2, 2, 1), f32), np.empty((2, 2, S), f32)
    h = np.zeros((2, 1), f32)
    ro = h.copy()                            # the cell of layer.step / freeze(): its state
    for s in (h, ro):                        # argument may be a read-only array (a type
        for has_h in (True, False):          # of its own); RNN's joint form: no h part
            k.cell(gx[0], gx[0], has_h, np.zeros(G, f32), np.zeros(G, f32), s,
                   np.empty((2, 1), f32), np.empty((2, 1), f32))
        ro.flags.writeable = False
    if k.forward is None:                    # RNN: the cell only
        return
    k.forward(gx, np.zeros((1, G), f32), np.zeros(1, f32), z, z, False, out,
              np.empty((2, 1), f32), False, store, True)
    k.backward(out, True, z.copy(), z.copy(), gx, store, z, out, np.zeros((G, 1), f32),
               False, np.empty((2, 2, G), f32), np.empty((2, 2, 1), f32))
    step = k.step(np.zeros(G, f32), np.zeros(1, f32))   # one step and back, as the driver
    _, cache = step(gx[0], np.zeros((2, G), f32), h, h, np.empty((2, 1), f32),
                    store[0])                        # calls them (column slices too)
    k.back(h, h if fam.has_cell_state else None, cache, np.empty((2, G), f32),
           np.empty((2, 1), f32))
    if not fam.has_cell_state:               # GRU's backward reads the outputs, which
        ro = out.copy()                      # the layer has made read-only by then (a
        ro.flags.writeable = False           # type of its own for numba)
        k.backward(out, True, z.copy(), z.copy(), gx, store, z, ro, np.zeros((G, 1), f32),
                   False, np.empty((2, 2, G), f32), np.empty((2, 2, 1), f32))
        k.back(h, None, (gx[0], store[0], ro[0]), np.empty((2, G), f32),
               np.empty((2, 1), f32))
