"""Compiled time loops (numba) for float32 GRU and LSTM at small sizes: optional.

At (T, N, H) = (50, 16, 32) a NumPy cell step is ~12 ufunc calls of ~1 us each forward and
~20 backward, and no layout change removes that (BENCHMARKS.md); a compiled loop does the
recurrent matmul and every gate of every unit in one pass. These loops serve the sequence
driver for the built-in GRU and LSTM families, in float32, without lengths or projections,
when N * G*H * H_out is at most ``LIMIT`` (above it OpenBLAS's matmul wins):

- the forward time loop of a direction, unrecorded (inference) or recording (training:
  it leaves the gate values and the cell's stored values exactly where the NumPy step
  leaves them, so either backward can read the record);
- the BPTT time loop (per step the cell's back and dh W_hh), when some gradient reaches h
  at the last step and no per-step norms are asked for. dW_ih, dW_hh, the biases and dx
  stay single BLAS calls after the loop, as on the NumPy path.

Everything else, and every machine without numba (``pip install 'rnnlab[fast]'``), runs
the NumPy path.

Numbers: the same equations as cells/gru.py and cells/lstm.py, in float32. pip's llvmlite
has no vector math library, so exp, sigmoid and tanh are our own (Cephes' float32
algorithms, _compiled.py), vectorised by LLVM: within a few float32 ulps of the exact
values, like NumPy's own float32 functions, but not always the same last bit; the results
equal the NumPy path's to float32 rounding (tests/test_kernels.py). NaN, inf and -0.0 go
through as in the NumPy path (sigmoid is exactly 0 where exp(-x) overflows, so that
0 * inf stays NaN in the gradients).

``RNNLAB_KERNELS=numpy`` in the environment turns them off. The first use in a process
imports numba (~0.5 s) and loads the compiled code from numba's cache next to
_compiled.py (the first use after installing compiles it: a few seconds). If numba is
missing or fails to compile, the NumPy path runs; nothing else changes.
"""
import os

import numpy as np

LIMIT = 1 << 20          # N * G*H * H_out per step; above it OpenBLAS wins (BENCHMARKS.md)

KINDS = ("gru", "lstm")    # families with a compiled loop

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
    for family, forward, back in _load():
        if fam is family:
            return back if backward else forward
    return None


NO_STORE = np.zeros((1, 1, 1), np.float32)   # the store argument of unrecorded calls


def step_caches(fam, gx, store, out, h0, c0, reverse):
    """After a recording compiled forward: per step, the cache the NumPy step would have
    returned, as views of gx and store (LSTM: gates, c before the step, tanh(c'); GRU:
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


def _load():
    if not _state["loaded"]:
        _state["loaded"] = True
        if os.environ.get("RNNLAB_KERNELS", "").lower() != "numpy":
            _state["kernels"] = _build()
    return _state["kernels"] or ()


def _build():
    """[(family, forward, backward)], each compiled (or loaded from the cache) and run once
    on a tiny input; () when numba is missing or anything fails (the NumPy path then
    runs)."""
    from ..cells import gru, lstm
    try:
        from . import _compiled             # imports numba
        kernels = [(lstm.FAMILY, _compiled.lstm, _compiled.lstm_back),
                   (gru.FAMILY, _compiled.gru, _compiled.gru_back)]
        f32 = np.float32
        for fam, forward, back in kernels:
            G = fam.num_gates
            z, gx = np.zeros((2, 1), f32), np.zeros((2, 2, G), f32)
            out, store = np.empty((2, 2, 1), f32), np.empty((2, 2, fam.store), f32)
            forward(gx, np.zeros((1, G), f32), np.zeros(1, f32), z, z, False, out,
                    np.empty((2, 1), f32), False, store, True)
            back(out, True, z.copy(), z.copy(), gx, store, z, out, np.zeros((G, 1), f32),
                 False, np.empty((2, 2, G), f32), np.empty((2, 2, 1), f32))
        return kernels
    except Exception:                       # numba missing, or unable to compile here
        return ()
