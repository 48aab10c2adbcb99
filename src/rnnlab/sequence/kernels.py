"""Compiled time loops (numba) for float32 inference at small sizes: optional.

At (T, N, H) = (50, 16, 32) a NumPy cell step is ~12 ufunc calls of ~1 us each, and no
layout change removes that (BENCHMARKS.md); a compiled loop does the recurrent matmul and
every gate of every unit in one pass. These loops serve the sequence driver's unrecorded
forward (inference: eval mode or no_grad) of the built-in GRU and LSTM families, in
float32, without lengths or projections, when N * G*H * H_out is at most ``LIMIT`` (above
it OpenBLAS's matmul wins); everything else, and every machine without numba
(``pip install 'rnnlab[fast]'``), runs the NumPy path.

Numbers: the same equations as cells/gru.py and cells/lstm.py, in float32. pip's llvmlite
has no vector math library, so exp, sigmoid and tanh are our own (Cephes' float32
algorithms, _compiled.py), vectorised by LLVM: within a few float32 ulps of the exact
values, like NumPy's own float32 functions, but not always the same last bit; the results
equal the NumPy path's to float32 rounding (tests/test_kernels.py). NaN, inf and -0.0 go
through as in the NumPy path.

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


def kernel_for(fam, dtype, N, GH, H_out, has_proj):
    """The compiled forward loop for this call, or None (use the NumPy path). Called as
    kernel(gx, w_hh_t, b_rest, h0, c0, reverse, out, c_n, rows), every array C-contiguous
    float32 (see _compiled.lstm / _compiled.gru; always pass rows, so that one compiled
    signature serves every call)."""
    if (dtype != np.float32 or has_proj or N == 0 or N * GH * H_out > LIMIT
            or fam.kind not in KINDS):
        return None                         # decided before numba is ever imported
    for family, kernel in _load():
        if fam is family:
            return kernel
    return None


def _load():
    if not _state["loaded"]:
        _state["loaded"] = True
        if os.environ.get("RNNLAB_KERNELS", "").lower() != "numpy":
            _state["kernels"] = _build()
    return _state["kernels"] or ()


def _build():
    """[(family, kernel)], each compiled (or loaded from the cache) and run once on a tiny
    input; () when numba is missing or anything fails (the NumPy path then runs)."""
    from ..cells import gru, lstm
    try:
        from . import _compiled             # imports numba
        pairs = [(lstm.FAMILY, _compiled.lstm), (gru.FAMILY, _compiled.gru)]
        for fam, kernel in pairs:
            G = fam.num_gates
            z = np.zeros((2, 1), np.float32)
            kernel(np.zeros((2, 2, G), np.float32), np.zeros((1, G), np.float32),
                   np.zeros(1, np.float32), z, z, False, np.empty((2, 2, 1), np.float32),
                   np.empty((2, 1), np.float32), False)
        return pairs
    except Exception:                       # numba missing, or unable to compile here
        return ()

