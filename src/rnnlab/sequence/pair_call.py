"""A sequence's call planned once for a layer's weights and an input shape (nn/quick.py,
the call a service repeats). ``PairCall``: a batch-1 sequence on the pair; what
driver._pair_forward works out at every call (the kernel, the folded biases' layout, the
halves' projections' scratch, the step box's key) made once, the scratch kept from call
to call (as the layer's pool keeps it, without the lease's bookkeeping), the biases
folded again at every call (an edit in place is seen at once, as the weights' kept
panels see theirs). The same kernel and arguments as the general path: the same bits.

The scratch (2 x T*G*H/2 float32 projections, the (3 T + 4,) sync words, c_n's row)
stays while the plan lives (the layer's ``_quick``: .to() drops it) or until
rnnlab.empty_cache() (``pool.HELD``: made again at the next call). Used under the pair's
lock only: another thread's call meanwhile takes the general path.

``BatchCall``: a batch of 3 rows or more whose rows the general path runs in halves
(halves.forward, _loops_in.SEQUENCE_IN): the route and the biases' layout found once,
then halves.forward itself; no scratch of its own (the output and c_n are new each call,
the weights' panels linalg.kept_panels_of's, compared bit for bit at every call as on the
general path; the last calling thread's kept buffers held, so that its next call skips
pool.KEPT's lookup: another thread's call looks its own up there and is held instead, so
the plan never holds buffers KEPT has let go of (a thread gone, empty_cache) for longer
than until the next call).
"""
from threading import get_ident

import numpy as np

from . import halves, kernels, pair, pair_step
from .driver import _QUIET, _fold_bias, _folded
from .linalg import both_halves, keepable, kept_buffer, panels_in
from .pool import HELD, PLAIN, aligned_empty
from .records import LayerWeights

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


class BatchCall:
    """``run(x, h0, c0)`` for x (T, N, I), N >= 3, through one direction of a layer of
    family ``fam`` with ``weights`` (w_ih, w_hh, b_ih, b_hh: the live float32 parameters,
    C-contiguous, writeable; biases both None or both there): halves.forward, as the
    general path calls it. Make it only for a call halves.unrecorded_wanted takes
    (``make``: None where it does not)."""

    @classmethod
    def make(cls, fam, weights, T, N, reverse):
        """A BatchCall, or None where the general path would not run halves.forward."""
        GH, H = weights[1].shape
        if not halves.unrecorded_wanted(fam, F32, T, N, GH, H, False):
            return None
        return cls(fam, weights, reverse,
                   kernels.kernel_for(fam, F32, N, GH, H, False, name="forward_in"))

    def __init__(self, fam, weights, reverse, kernel):
        self.fam, self.weights, self.reverse, self.kernel = fam, weights, reverse, kernel
        self.w = LayerWeights(*weights[:2], None, None, None, None)
        GH, self.H = weights[1].shape
        self.no_rest = np.zeros(GH - _folded(fam, GH), F32)    # no bias, or none of b_hh's
        self.no_bias = None if weights[2] is not None else np.zeros(GH, F32)   # left over
        self.own = all(map(keepable, weights[:2]))    # (else halves.forward's panels)
        self.held = None    # (a thread's id, the buffers it keeps the weights' panels in)
        HELD.add(self)

    def drop(self):
        """Let go of the kept buffers (rnnlab.empty_cache(): pool.KEPT drops them too)."""
        self.held = None

    def run(self, x, h0, c0):
        """halves.forward's (out (T, N, H), h_n (a view of out's last step), c_n (N, H)
        of its own, None without a cell state) for x (T, N, I) from h0, c0 (N, H) (c0
        None without a cell state), the arrays as the kernels take them (float32,
        C-contiguous, writeable). The biases are folded again at every call, into a new
        array (an edit in place is seen; a call in another thread meanwhile has its own);
        the weights' panels from their kept buffers, compared with them bit for bit."""
        bias, b_rest = self.no_bias, None
        if bias is None:
            with np.errstate(**_QUIET):
                bias, b_rest = _fold_bias(self.fam, self.weights)
        panels, held, me = None, self.held, get_ident()
        if self.own:
            if held is None or held[0] != me:       # another thread's: pool.KEPT's lookup
                held = self.held = me, tuple(map(kept_buffer, self.weights[:2]))
            panels = (panels_in(held[1][0], self.weights[0]),
                      panels_in(held[1][1], self.weights[1]))
        return halves.forward(self.fam, x, h0, c0, self.w, bias,
                              self.no_rest if b_rest is None else b_rest, self.reverse,
                              PLAIN.empty, PLAIN, self.kernel, panels)
