"""A batch's rows in two halves, one per thread (pair.rows_wanted): the compiled time
loops (SEQUENCE, recording or not, and SEQUENCE_BACK) and the matrix products around
them (the input projection; BPTT's dW and dx).

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
whole loop's bits (rows are computed in pairs from an even first row). A product's
halves may differ in the last bit from the one product of all rows (OpenBLAS rounds a
row by where it sits in the product: measured here, 1.5% of random shapes with halves of
64 rows or more), within float32's tolerance of torch as every other path.
"""
import numpy as np

from .pair import cooling, enabled, rows_wanted, run_both


def wanted(fam, dtype, T, N, GH, H_out, has_proj):
    """Whether a recorded call (and its BPTT) of this shape runs in halves."""
    return rows_wanted(fam, dtype, T, N, GH, H_out, has_proj, record=True)


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


def matmul(a, b, out):
    """np.matmul(a, b, out=out) for 2-D a, its rows in two halves (in_parallel)."""
    m = a.shape[0] // 2
    in_parallel(lambda: np.matmul(a[:m], b, out=out[:m]),
                lambda: np.matmul(a[m:], b, out=out[m:]))
    return out


def first_half(N):
    """The rows of a batch's first half: even (the compiled loops compute rows in pairs
    from the first of their range, so the halves pair them as the whole call does)."""
    return 2 * ((N + 2) // 4)


def in_halves(kernel, args, N, split):
    """kernel(*args, lo, hi) over rows 0:N: a compiled time loop that writes each row of
    its arrays in place (SEQUENCE recording, SEQUENCE_BACK). split: rows 0:m here and
    m:N on the worker, the whole call's bits. The loops change their inputs in place, so
    the worker's half cannot be run again after it began: a failure there raises here
    instead (run_both would run it again)."""
    if not split:
        kernel(*args, 0, N)
        return
    m = first_half(N)
    began = []

    def second():
        if began:
            raise RuntimeError("rnnlab: the second half of a batch failed on the worker "
                               "thread after it had begun; its rows cannot be run again")
        began.append(True)
        kernel(*args, m, N)

    in_parallel(lambda: kernel(*args, 0, m), second)
