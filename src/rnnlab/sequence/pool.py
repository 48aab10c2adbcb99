"""Reusable scratch buffers for the sequence driver.

Writing to freshly allocated memory costs page faults; for the big per-call arrays (input
projections, per-step stores, gradient buffers) that can cost as much as the arithmetic
(measured in BENCHMARKS.md). A module keeps a Pool; each forward or backward takes its
buffers through a Lease and gives them back when the lease is released (for a forward:
when the call's record is garbage, so a record kept for a later backward keeps its
buffers). Only internal arrays are pooled, never one handed to the user.
"""
from collections import OrderedDict

import numpy as np


class Pool:
    """Free buffers by (shape, dtype): at most ``keep`` per shape, and only the ``shapes``
    most recently used shapes (inputs whose length changes every batch would otherwise
    leave a buffer behind for every length ever seen)."""

    def __init__(self, keep=2, shapes=16):
        self._free = OrderedDict()
        self._keep = keep
        self._shapes = shapes

    def lease(self):
        return Lease(self)

    def _get(self, key):
        stack = self._free.get(key)
        if stack is None:
            return None
        self._free.move_to_end(key)
        return stack.pop() if stack else None

    def _put(self, key, arr):
        stack = self._free.setdefault(key, [])
        self._free.move_to_end(key)
        if len(stack) < self._keep:
            stack.append(arr)
        while len(self._free) > self._shapes:
            self._free.popitem(last=False)              # least recently used shape

    def clear(self):
        self._free.clear()


class Lease:
    """Buffers taken for one call; ``pool=None`` means plain allocation."""

    def __init__(self, pool=None):
        self.pool = pool
        self.taken = []

    def empty(self, shape, dtype):
        key = (tuple(shape), np.dtype(dtype).str)
        arr = None if self.pool is None else self.pool._get(key)
        if arr is None:
            arr = np.empty(shape, dtype=dtype)
        if self.pool is not None:
            self.taken.append((key, arr))
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
        if self.pool is not None:
            for key, arr in self.taken:
                self.pool._put(key, arr)
        self.taken = []


PLAIN = Lease(None)      # plain allocation, nothing kept
