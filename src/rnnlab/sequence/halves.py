"""A batch's rows in two halves, one per thread. Recorded calls (pair.rows_wanted): the
compiled time loops (SEQUENCE recording, and SEQUENCE_BACK) and the matrix products
around them (the input projection; BPTT's dW and dx). Unrecorded calls
(``unrecorded_wanted``): one compiled call that projects the input inside the loop,
a few steps at a time (_loops_in.SEQUENCE_IN), its halves met without Python (pair_step.halves).

The rows of a batch never meet, so the caller runs rows 0:m and the pair's worker
(pair.run_both) rows m:N, meeting once at the end; the products around the loops run as
two halves on one OpenBLAS thread each. Why not leave those products to OpenBLAS's own
two threads: after each, OpenBLAS's second thread spins for ~0.1 s on the other core,
and the worker's half then waited for that core (measured, LSTM (100, 16, 128, 128)
training: OpenBLAS's thread 1.37 s of CPU in 1.56 s, the worker 0.17 s; half the loops
ran one after the other).

The numbers do not depend on the threads: whether the worker runs the second half, or
the caller runs both one after the other (the pair busy, cooling down, or
rnnlab.set_num_threads(1)), the same halves are computed. A loop's halves give the
whole loop's bits (each row's sums in one order, however rows are grouped). A product's
halves may differ in the last bit from the one product of all rows (OpenBLAS rounds a
row by where it sits in the product: measured here, 1.5% of random shapes with halves of
64 rows or more), within float32's tolerance of torch as every other path.
"""
import numpy as np

from ..tuning import BESIDE_MAX, HALVES_MIN, HALVES_STEP_MIN
from . import kernels, pair_step
from .linalg import kept_panels_of
from .pair import _by_units, cooling, enabled, possible, rows_wanted, run_both
from .pool import aligned_empty


def wanted(fam, dtype, T, N, GH, H_out, has_proj):
    """Whether a recorded call (and its BPTT) of this shape runs in halves."""
    return rows_wanted(fam, dtype, T, N, GH, H_out, has_proj)


def unrecorded_wanted(fam, dtype, T, N, GH, H_out, has_proj):
    """Whether an unrecorded call of N >= 3 rows on the compiled loop runs as
    _loops_in.SEQUENCE_IN, its rows in halves (pair_step.halves): from HALVES_MIN recurrent
    multiply-adds and HALVES_STEP_MIN gate outputs a step (N * G*H), not a call the pair
    runs by units. By shape alone (possible, not enabled): under set_num_threads(1) the
    caller runs the same kernel's two halves, so the numbers never depend on the
    threads."""
    return (N >= 3 and T * N * GH * H_out >= HALVES_MIN and N * GH >= HALVES_STEP_MIN
            and possible() and not _by_units(fam, dtype, N, GH, H_out, has_proj, T)
            and kernels.kernel_for(fam, dtype, N, GH, H_out, has_proj,
                                   name="forward_in") is not None)


def in_parallel(first, second):
    """(first(), second()) with second on the worker (pair.run_both, spinning), under the
    caller's NumPy error state (np.errstate is per thread); both here, one after the
    other, with OpenBLAS's threads as they are (as the whole call's products would be),
    where the pair may not run now (rnnlab.set_num_threads(1)) or is cooling down (the
    worker did not get a core lately: run_both would hold OpenBLAS to one thread)."""
    if not enabled() or cooling():
        return first(), second()
    err = np.geterr()

    def there():
        with np.errstate(**err):
            return second()
    return run_both(first, there, spin=True)


def forward(fam, inp, h0, c0, w, bias, b_rest, reverse, empty, lease, kernel=None,
            panels=None):
    """An unrecorded call (``unrecorded_wanted``) on the compiled loop that projects the
    input a few steps at a time (_loops_in.SEQUENCE_IN), its rows in halves met without
    Python (pair_step.halves): no gx of all steps. bias, b_rest as the driver folds them, as the
    compiled loops take them (zeros without bias); ``empty``: where the outputs come from
    (the lease, or plain); the weights' panels kept between calls (linalg.kept_panels_of);
    ``kernel``, ``panels`` (W_ih's and W_hh's): the family's SEQUENCE_IN and the weights'
    panels where the caller has them (pair_call.BatchCall). Returns out, h_n, c_n."""
    T, N = inp.shape[:2]
    GH, H = w.w_hh.shape
    dt, ready = inp.dtype, kernels.ready
    out = empty((T, N, H), dt)
    h0 = ready(h0)
    c_n = h0 if c0 is None else aligned_empty(c0.shape, dt, least=0)   # halves meet in it
    kernel = kernel or kernels.kernel_for(fam, dt, N, GH, H, False, name="forward_in")
    p_ih, p_hh = panels or (kept_panels_of(w.w_ih, lease), kept_panels_of(w.w_hh, lease))
    pair_step.halves(fam, kernel, (ready(inp), p_ih, bias, p_hh, b_rest, h0,
                                   h0 if c0 is None else ready(c0), reverse, out, c_n))
    return out, out[0 if reverse else T - 1], (None if c0 is None else c_n)


def beside(nbytes):
    """Whether a recorded call whose input projections take ``nbytes`` does its serial
    work beside the worker's half (``in_halves``' also): up to tuning.BESIDE_MAX."""
    return nbytes <= BESIDE_MAX


def matmul(a, b, out, also=None, near=True):
    """np.matmul(a, b, out=out) for 2-D a, its rows in two halves (in_parallel); ``also``,
    ``near``: as ``in_halves``'."""
    m = a.shape[0] // 2
    _with(lambda: np.matmul(a[:m], b, out=out[:m]),
          lambda: np.matmul(a[m:], b, out=out[m:]), also, near)
    return out


def _with(first, second, also, near):
    """in_parallel(first, second) with ``also`` on the caller after ``first`` (near) or
    after both (``in_halves``)."""
    def here():
        first()
        if also is not None and near:
            also()
    in_parallel(here, second)
    if also is not None and not near:
        also()


def first_half(N):
    """The rows of a batch's first half: even (the compiled loops computed rows in pairs
    from the first of their range before the register tiles; any split gives the same
    bits since, tests/test_tiles.py)."""
    return 2 * ((N + 2) // 4)


def in_halves(kernel, args, N, split, also=None, near=True):
    """kernel(*args, lo, hi) over rows 0:N: a compiled time loop that writes each row of
    its arrays in place (SEQUENCE recording, SEQUENCE_BACK). split: rows 0:m here and
    m:N on the worker, the whole call's bits. The loops change their inputs in place, so
    the worker's half cannot be run again after it began: a failure there raises here
    instead (run_both would run it again). ``also``: called here after the first half
    (after the loop without split): the caller's serial work (a copy, a buffer from the
    lease, which is not thread-safe) done while the worker's half runs, begun 25-35 us
    after the caller's (its wake and the GIL taken back: BENCHMARKS.md, "Work beside the
    worker's late start"); near=False (a large call: ``beside``): after the hand-over."""
    if not split:
        kernel(*args, 0, N)
        if also is not None:
            also()
        return
    m = first_half(N)
    began = []

    def second():
        if began:
            raise RuntimeError("rnnlab: the second half of a batch failed on the worker "
                               "thread after it had begun; its rows cannot be run again")
        began.append(True)
        kernel(*args, m, N)

    _with(lambda: kernel(*args, 0, m), second, also, near)
