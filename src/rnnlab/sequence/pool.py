"""Reusable scratch buffers for the sequence driver.

Writing to freshly allocated memory costs page faults; for the big per-call arrays (input
projections, per-step stores, gradient buffers) that can cost as much as the arithmetic.
A module keeps a Pool per thread; each forward or backward takes its buffers through a
Lease and gives them back when the lease is released (a forward's when its record is
freed: by backward, by the next forward, or when it is garbage; a layer's backward takes
a lease joined to its forward's, so that the pool keeps both). A recorded call's copies
of the weights and backward's dW temporaries are pooled too, up to
tuning.POOL_WEIGHTS_MIN to POOL_WEIGHTS_MAX bytes each (``for_weights``).

The rule, in bytes: after a lease is released the pool keeps free buffers of at most the
bytes that lease took (one call's working set), least recently used dropped first. A long
sequence's scratch is therefore given back by the next shorter call, and inference whose
lengths change every call holds about one call's working set, never one per length.
``clear()`` (``rnnlab.empty_cache()``, ``module.eval()``) gives everything back.
Only internal arrays are pooled, never one handed to the user.
"""
import ctypes
import math
import sys
import weakref
from collections import OrderedDict

import numpy as np

from ..tuning import POOL_WEIGHTS_MAX, POOL_WEIGHTS_MIN

ALL = weakref.WeakSet()            # every pool, for rnnlab.empty_cache()
#: buffers kept between calls for weight arrays (linalg._kept): (their ids, a tag) -> (weak
#: references to them, the buffers); rnnlab.empty_cache() drops them too
KEPT = {}
#: objects that hold scratch of their own between calls (pair_call.PairCall): empty_cache()
#: calls each one's drop()
HELD = weakref.WeakSet()

#: Buffers of ALIGN_MIN bytes or more (every scratch buffer of a lease; the parameters and
#: the step snapshots' weights at any size) start on a 64-byte cache line. NumPy's
#: allocator gives 16 bytes (a large array sits 16 bytes past a page): every 64-byte
#: vector load of the compiled loops then straddles two lines, and where two threads
#: write neighbouring rows or halves (the pair, a batch's halves) they share a line at the
#: seam. One process, the two placements alternated in blocks of 10 calls, 30 blocks,
#: median ratio unaligned / aligned (quartiles): weights, inference, LSTM (100, 1, 256,
#: 256) 1.15 (1.10-1.19), GRU 1.14, RNN 1.11, LSTM (100, 1, 512, 512) 1.07, GRU 1.08;
#: (100, 16, 128, 128) and (100, 64, 256, 256) 0.97-1.00 (they read packed copies); the
#: leases' buffers, inference, LSTM (100, 16, 128, 128) 1.06 (1.06-1.07), (50, 16, 32,
#: 32) 1.03, GRU (100, 8, 256, 256) 1.09; training at batch 1 1.00. Below ALIGN_MIN a
#: lease's buffer is plain (aligning costs ~2 us a buffer; batch-1 steps allocate a few).
ALIGN = 64
ALIGN_MIN = 1 << 12


class _Line(np.ndarray):
    """The memory under an array that aligned_empty made: its ``base``, held by nothing
    else (views of that array hold the array, as views of an owning array do)."""


def aligned_empty(shape, dtype, least=ALIGN_MIN):
    """np.empty(shape, dtype), C-contiguous, starting on an ALIGN-byte boundary when it
    has ``least`` bytes or more (plain np.empty below)."""
    dt = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    n = math.prod(shape) * dt.itemsize
    if n < least:
        return np.empty(shape, dt)
    line = _Line((n + ALIGN,), np.uint8)      # (its address through ctypes: 0.3 us, where
    return np.ndarray(shape, dt, line, -_address(line) % ALIGN)   # __array_interface__ 2)


def _address(a):
    """The address of ``a``'s first byte (a writeable array)."""
    return ctypes.addressof(ctypes.c_char.from_buffer(a))


def aligned_copy(a, dtype=None, least=0):
    """A C-contiguous copy of ``a`` from aligned_empty, in ``dtype`` (a's by default),
    cast as it is written (one pass, no intermediate array)."""
    out = aligned_empty(a.shape, a.dtype if dtype is None else dtype, least)
    out[...] = a
    return out


def owns_memory(a):
    """Whether ``a`` is the one array that holds its memory: it owns it (NumPy's
    ``base is None``) or aligned_empty made it (its base a _Line). References to ``a``
    then count everything that can reach the memory."""
    return a.base is None or type(a.base) is _Line


class Pool:
    """Free buffers by (shape, dtype), at most ``keep`` per shape (a deep bidirectional
    training call leases several of one shape: each direction's weight copies and dW; with
    2 per shape its second call made 20 of its buffers afresh), at most the bytes of the
    most recently released lease (with its joined lease: Lease.joined) in all."""

    def __init__(self, keep=64):
        self._free = OrderedDict()           # key -> [arrays], least recently used first
        self._keep = keep
        self.bytes = 0                       # held in free buffers
        ALL.add(self)

    def lease(self):
        return Lease(self)

    def _get(self, key):
        stack = self._free.get(key)
        if not stack:
            return None
        self._free.move_to_end(key)
        arr = stack.pop()
        self.bytes -= arr.nbytes
        return arr

    def _put(self, key, arr):
        stack = self._free.setdefault(key, [])
        self._free.move_to_end(key)
        if len(stack) < self._keep:
            stack.append(arr)
            self.bytes += arr.nbytes

    def reuse(self, arrays):
        """Arrays that nothing else refers to (a module's gradients that zero_grad drops)
        of tuning.POOL_WEIGHTS_MIN to POOL_WEIGHTS_MAX bytes become free buffers: the next
        backward's dW temporaries, which become the gradients again, then need no fresh
        memory. ``arrays`` (a list) is emptied; an array that anything else still holds
        is left alone."""
        kept = []
        while arrays:
            a = arrays.pop()
            if (isinstance(a, np.ndarray) and owns_memory(a) and a.flags.c_contiguous
                    and a.flags.writeable and _weight_sized(a.nbytes)):
                kept.append(a)
        a = None
        kept.append(np.empty(0))             # a probe only this list holds: the baseline
        counts = [sys.getrefcount(k) for k in kept]
        for k, n in zip(kept[:-1], counts):
            if n <= counts[-1]:
                self._put((k.shape, k.dtype.str), k)

    def trim(self, limit):
        """Drop least recently used free buffers until at most ``limit`` bytes are held."""
        while self.bytes > limit and self._free:
            key, stack = next(iter(self._free.items()))
            while stack and self.bytes > limit:
                self.bytes -= stack.pop(0).nbytes
            if not stack:
                del self._free[key]

    def clear(self):
        self._free.clear()
        self.bytes = 0


class Lease:
    """Buffers taken for one call; ``pool=None`` means plain allocation."""

    def __init__(self, pool=None, parent=None):
        self.pool = pool
        self.taken = []
        self.bytes = 0
        self.parent = parent       # joined(): trimmed with that lease
        self.extra = 0             # the largest joined lease's bytes
        self.released = False

    def joined(self):
        """A lease for more buffers of the same call (a training call's backward, taken
        from its forward's lease): released on its own, its buffers go back to the pool
        at once, but the pool is trimmed to both leases' bytes, so that neither's buffers
        drop the other's (the backward's scratch was dropped by the forward's release
        and allocated afresh every call: page faults)."""
        return Lease(self.pool, parent=self)

    def forget(self, arrays):
        """Buffers among ``arrays`` leave the lease for good (handed on to an owner that
        keeps them: a module's first gradients)."""
        ids = {id(a) for a in arrays}
        self.taken = [(k, a) for k, a in self.taken if id(a) not in ids]

    def empty(self, shape, dtype):
        if self.pool is None:                      # PLAIN: nothing to find or to keep
            return aligned_empty(shape, dtype)
        key = (tuple(shape), np.dtype(dtype).str)
        arr = self.pool._get(key)
        if arr is None:
            arr = aligned_empty(shape, dtype)
        self.taken.append((key, arr))
        self.bytes += arr.nbytes
        return arr

    def zeros(self, shape, dtype):
        arr = self.empty(shape, dtype)
        arr.fill(0)
        return arr

    def give_back(self, arr):
        """Return one buffer before the lease ends (the inference path frees each layer's
        scratch as soon as the layer is done)."""
        if self.pool is not None:
            for i, (key, a) in enumerate(self.taken):
                if a is arr:
                    del self.taken[i]
                    self.pool._put(key, a)
                    return

    def release(self):
        """Give every buffer back; the pool then keeps at most this call's bytes (with a
        joined lease's: both)."""
        if self.pool is not None and not self.released:
            for key, arr in self.taken:
                self.pool._put(key, arr)
            top = self.parent
            if top is None:
                self.pool.trim(self.bytes + self.extra)
            else:
                top.extra = max(top.extra, self.bytes)
                if top.released:
                    self.pool.trim(top.bytes + top.extra)
        self.taken = []
        self.released = True


PLAIN = Lease(None)      # plain allocation, nothing kept


def for_weights(lease, shape, dtype):
    """A buffer for a weight-sized array: from ``lease`` from tuning.POOL_WEIGHTS_MIN to
    POOL_WEIGHTS_MAX bytes, a fresh one otherwise (tiny ones cost next to nothing, and a
    huge layer keeps 2x its parameters between calls)."""
    pooled = _weight_sized(math.prod(shape) * np.dtype(dtype).itemsize)
    return (lease if pooled else PLAIN).empty(shape, dtype)


def _weight_sized(nbytes):
    """Whether a weight-sized buffer of ``nbytes`` is pooled (tuning.POOL_WEIGHTS_MIN to
    POOL_WEIGHTS_MAX)."""
    return POOL_WEIGHTS_MIN <= nbytes <= POOL_WEIGHTS_MAX


def empty_cache():
    """``rnnlab.empty_cache()`` (torch.cuda.empty_cache's name): give back every free
    scratch buffer of every module, and the weights' panels kept between unrecorded calls
    (``KEPT``: made again at the next call). Buffers a recorded forward still needs for
    its backward stay until that record is freed (by its backward, unless
    retain_graph=True, or by the layer's next forward); a batch-1 sequence's planned
    scratch (``HELD``) too."""
    for pool in list(ALL):
        pool.clear()
    KEPT.clear()
    for held in list(HELD):
        held.drop()


def snapshot(lease, a):
    """A copy of weight ``a`` (None: None) in a buffer from ``lease`` (``for_weights``):
    what a record keeps for backward, reused from call to call, not fresh memory."""
    if a is None:
        return None
    out = for_weights(lease, a.shape, a.dtype)
    np.copyto(out, a)
    return out
