"""Shared by the kernel tests: run a call with the compiled kernels counted, or with the
NumPy path only."""
import contextlib

import rnnlab
from rnnlab.sequence import kernels

FORWARD_KEYS = ("forward", "step", "cell", "rows", "rows_1")
BACKWARD_KEYS = ("backward", "back")
FAMILIES = [rnnlab.cells.by_kind(k) for k in ("rnn", "rnn_relu", "gru", "lstm")]


def built():
    """{family: its compiled functions} (building them), or {} when numba cannot."""
    out = {f: kernels.kernels(f, "cell") for f in FAMILIES}
    return {f: k for f, k in out.items() if k is not None}


@contextlib.contextmanager
def counted(calls, forward=True, backward=True, keep=()):
    """Within: each family's compiled functions counted in ``calls``; forward / backward
    False: those kinds are left out (the NumPy path runs there); ``keep``: names left as
    they are (not counted)."""
    saved = dict(kernels._BUILT)

    def wrap(f):
        return lambda *a: (calls.append(1), f(*a))[1]
    try:
        for fam, k in built().items():
            on = [n for n, on in ((FORWARD_KEYS, forward), (BACKWARD_KEYS, backward)) if on]
            kernels._BUILT[fam] = {n: (f if n in keep else wrap(f)) for n, f in k.items()
                                   if n in keep or any(n in group for group in on)}
        yield
    finally:
        kernels._BUILT.clear()
        kernels._BUILT.update(saved)


numpy_only = kernels.disabled


def both_paths(m, x, hx=None, **kw):
    """(compiled, numpy) results of an inference call, and whether the compiled one ran."""
    calls = []
    with counted(calls), rnnlab.no_grad():
        a = m(x, hx, **kw)
    with numpy_only(), rnnlab.no_grad():
        b = m(x, hx, **kw)
    return a, b, bool(calls)


def flat(result):
    out, state = result
    return [out] + (list(state) if isinstance(state, tuple) else [state])
