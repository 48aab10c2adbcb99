"""A batch-1 sequence's call on the pair, planned once for a layer's weights and an input
shape (nn/quick.py, the call a service repeats): what driver._pair_forward works out at
every call (the kernel, the folded biases' layout, the halves' projections' scratch, the
step box's key) made once, the scratch kept from call to call (as the layer's pool keeps
it, without the lease's bookkeeping), the biases folded again at every call (an edit in
place is seen at once, as the weights' kept panels see theirs). The same kernel and
arguments as the general path: the same bits.

The scratch (2 x T*G*H/2 float32 projections, the (3 T + 4,) sync words, c_n's row)
stays while the plan lives (the layer's ``_quick``: .to() drops it) or until
rnnlab.empty_cache() (``pool.HELD``: made again at the next call). Used under the pair's
lock only: another thread's call meanwhile takes the general path.
"""
import numpy as np

from . import kernels, pair, pair_step
from .driver import _QUIET, _folded
from .linalg import both_halves
from .pool import HELD, aligned_empty

F32 = np.dtype(np.float32)


class PairCall:
    """``run(x, h0, c0)`` for x (T, 1, I) through one direction of a layer of family
    ``fam`` with ``weights`` (w_ih, w_hh, b_ih, b_hh: the live float32 parameters, C
    -contiguous, writeable; biases both None or both there). Make it only for a call
    driver.wanted takes (the pair's shape) and where the family has a "pair" kernel
    (``make``)."""

    @classmethod
    def make(cls, fam, weights, T, I, reverse):
        """A PairCall, or None where the family has no compiled pair kernel."""
        k = kernels.kernels(fam, "sequence")
        kernel = None if k is None else k.get("pair")
        return None if kernel is None else cls(fam, kernel, weights, T, I, reverse)

    def __init__(self, fam, kernel, weights, T, I, reverse):
        w_ih, w_hh, b_ih, b_hh = weights
        GH, H = w_hh.shape
        G = fam.num_gates
        F = _folded(fam, GH)                    # gates whose b_hh folds into the projection
        self.fam, self.kernel, self.weights, self.reverse = fam, kernel, weights, reverse
        self.T, self.H, self.x2d = T, H, (T, I)
        self.halves = [G * (hi - lo) for lo, hi in both_halves(H)]
        self.bias = np.zeros(GH, F32)
        self.b_rest = b_hh[F:] if b_hh is not None and F < GH else np.zeros(GH - F, F32)
        self.fold = None if b_ih is None else (
            (b_ih[:F], b_hh[:F], self.bias[:F]) + ((b_ih[F:], self.bias[F:]) if F < GH else ()))
        self.gx = self.sync = self.c_n = None
        HELD.add(self)

    def drop(self):
        """Give the scratch back (rnnlab.empty_cache); the next run makes it again."""
        self.gx = self.sync = self.c_n = None

    def run(self, x, h0, c0):
        """(out (T, 1, H), h_n (a view of out's last row), c_n) for x (T, 1, I) from h0,
        c0 (1, H) (c0: h0 without a cell state), the arrays as the kernels take them
        (float32, C-contiguous, writeable); c_n a copy of the plan's own row, made under
        the pair's lock. None, having done nothing, while the pair cools down or another
        thread holds it."""
        if pair.cooling():
            return None
        lock = pair._state["lock"]
        if not lock.acquire(blocking=False):
            return None
        try:
            if self.gx is None:
                self.gx = [aligned_empty((self.T, n), F32) for n in self.halves]
                self.sync = np.zeros(3 * self.T + 4, np.int64)
                self.c_n = aligned_empty((1, self.H), F32, least=0)
            if self.fold is not None:           # b_ih + b_hh of the folded gates, again:
                with np.errstate(**_QUIET):     # a bias written in place is seen
                    np.add(*self.fold[:3])
                if len(self.fold) > 3:
                    np.copyto(self.fold[4], self.fold[3])
            out = aligned_empty((self.T, 1, self.H), F32)
            w_ih, w_hh = self.weights[:2]
            pair_step.pair_held(self.fam, self.kernel, (
                x.reshape(self.x2d), w_ih, w_hh, self.bias, self.b_rest, h0, c0,
                self.reverse, out, self.c_n, *self.gx), self.sync)
            return out, out[0 if self.reverse else self.T - 1], self.c_n.copy()
        finally:
            lock.release()
