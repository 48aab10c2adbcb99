"""Reusable scratch buffers for the sequence driver.

Writing to freshly allocated memory costs page faults; for the big per-call arrays (input
projections, per-step stores, gradient buffers) that can cost as much as the arithmetic.
A module keeps a Pool per thread; each forward or backward takes its buffers through a
Lease and gives them back when the lease is released (a forward's when its record is
freed: by backward, by the next forward, or when it is garbage).

The rule, in bytes: after a lease is released the pool keeps free buffers of at most the
bytes that lease took (one call's working set), least recently used dropped first. A long
sequence's scratch is therefore given back by the next shorter call, and inference whose
lengths change every call holds about one call's working set, never one per length.
``clear()`` (``rnnlab.empty_cache()``, ``module.eval()``) gives everything back.
Only internal arrays are pooled, never one handed to the user.
"""
import weakref
from collections import OrderedDict

import numpy as np

ALL = weakref.WeakSet()            # every pool, for rnnlab.empty_cache()


class Pool:
    """Free buffers by (shape, dtype), at most ``keep`` per shape, at most the bytes of the
    most recently released lease in all."""

    def __init__(self, keep=2):
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

    def __init__(self, pool=None):
        self.pool = pool
        self.taken = []
        self.bytes = 0

    def empty(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype).str)
        arr = None if self.pool is None else self.pool._get(key)
        if arr is None:
            arr = np.empty(shape, dtype=dtype)
        if self.pool is not None:
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
        """Give every buffer back; the pool then keeps at most this call's bytes."""
        if self.pool is not None and (self.taken or self.bytes):
            for key, arr in self.taken:
                self.pool._put(key, arr)
            self.pool.trim(self.bytes)
        self.taken = []
        self.bytes = 0


PLAIN = Lease(None)      # plain allocation, nothing kept


def empty_cache():
    """``rnnlab.empty_cache()`` (torch.cuda.empty_cache's name): give back every free
    scratch buffer of every module. Buffers a recorded forward still needs for its
    backward stay until that record is freed (by its backward, unless retain_graph=True,
    or by the layer's next forward)."""
    for pool in list(ALL):
        pool.clear()
