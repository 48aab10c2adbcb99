"""Variable-length batches: lengths, sorting by length, and torch's PackedSequence layout.

A PackedSequence stores the time steps of a batch sorted by length, longest first:
``data`` (sum(batch_sizes), *F) holds step 0 of every sequence, then step 1 of those still
running, ...; ``batch_sizes[t]`` is how many sequences run at step t; sequence j of the
sorted order is sequence ``sorted_indices[j]`` of the original batch. torch is never
imported here: its PackedSequence is read by duck typing.
"""
from typing import NamedTuple, Optional

import numpy as np

from ..checks import to_numpy
from ..errors import ShapeError


class PackedSequence(NamedTuple):
    """torch's PackedSequence fields as NumPy arrays (what ``to_packed`` returns)."""
    data: np.ndarray                      # (sum(lengths), *F)
    batch_sizes: np.ndarray               # (T,) int64
    sorted_indices: Optional[np.ndarray]  # (N,) int64
    unsorted_indices: Optional[np.ndarray]


def is_packed(value):
    """Duck test for a (torch or rnnlab) PackedSequence."""
    if type(value) is np.ndarray:              # the common call: no attribute lookups
        return False
    return all(hasattr(value, a) for a in ("data", "batch_sizes", "sorted_indices"))


def zero_padding(a, sizes):
    """Zero a (L, N, F) array (sorted batch order) past each sequence's length."""
    for t, b in enumerate(sizes):
        if b < a.shape[1]:
            a[t, b:] = 0


def check_lengths(lengths, T, N):
    """N integer lengths in 1..T as an int64 array, or a clear error."""
    arr = to_numpy(lengths, "lengths")
    if arr.ndim != 1 or arr.shape[0] != N:
        raise ShapeError(f"lengths must be a 1-D array of {N} lengths (one per sequence), "
                         f"got shape {arr.shape}")
    if arr.dtype.kind == "b":
        raise TypeError("lengths must be integers, got booleans")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise TypeError(f"lengths must be integers, got {arr.tolist()}")
    bad = [v for v in arr.tolist() if v < 1 or v > T]
    if bad:
        raise ValueError(f"lengths must be between 1 and the padded length {T}, got "
                         f"{bad} in {arr.tolist()}")
    return arr.astype(np.int64)


def batch_sizes_for(lengths, T):
    """Sort a batch by length, longest first. Returns (perm, batch_sizes):
    x[:, perm] puts the sequences in that order, and batch_sizes[t] is how many of them
    are still running at step t (a prefix of the sorted batch, as in a PackedSequence)."""
    lengths = np.asarray(lengths)
    perm = np.argsort(-lengths, kind="stable")
    sizes = (lengths[perm][None, :] > np.arange(T)[:, None]).sum(axis=1)
    return perm, sizes


def _permutation(value, N, name):
    idx = to_numpy(value, name)
    if idx.dtype.kind not in "iu" or idx.shape != (N,) or not np.array_equal(
            np.sort(idx), np.arange(N)):
        raise ValueError(f"{name} must be a permutation of 0..{N - 1}, got "
                         f"{idx.tolist() if idx.size <= 20 else idx.shape}")
    return idx.astype(np.int64)


def from_packed(packed, batch_first=False, padding_value=0.0):
    """PackedSequence -> (padded, lengths) in the original batch order.

    padded: (L, N, *F) or (N, L, *F) with batch_first; lengths: (N,) int64. Feed them to
    a layer as ``layer(padded, h0, lengths=lengths)``. Same result as torch's
    pad_packed_sequence.
    """
    for attr in ("data", "batch_sizes"):
        if not hasattr(packed, attr):
            raise TypeError(f"expected a PackedSequence (with data, batch_sizes, "
                            f"sorted_indices, unsorted_indices), got {type(packed).__name__} "
                            f"without {attr!r}")
    data = to_numpy(packed.data, "packed.data")
    sizes = to_numpy(packed.batch_sizes, "packed.batch_sizes")
    if sizes.dtype.kind not in "iu" or sizes.ndim != 1 or sizes.size == 0 or \
            np.any(np.diff(sizes) > 0) or sizes[-1] < 1:
        raise ValueError(f"batch_sizes must be a non-increasing 1-D sequence of positive "
                         f"integer counts, got {sizes.tolist()}")
    sizes = sizes.astype(np.int64)
    if data.ndim < 1 or data.shape[0] != sizes.sum():
        raise ValueError(f"data has {data.shape[0] if data.ndim else 0} rows but batch_sizes "
                         f"add up to {sizes.sum()}")
    T, N = sizes.size, int(sizes[0])
    sorted_idx = getattr(packed, "sorted_indices", None)
    order = np.arange(N) if sorted_idx is None else _permutation(sorted_idx, N,
                                                                  "sorted_indices")
    padded = np.full((T, N) + data.shape[1:], padding_value, dtype=data.dtype)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for t in range(T):
        padded[t, order[:sizes[t]]] = data[offsets[t]:offsets[t + 1]]
    lengths = np.empty(N, dtype=np.int64)
    lengths[order] = (sizes[None, :] > np.arange(N)[:, None]).sum(axis=1)  # sorted j runs while sizes[t] > j
    if batch_first:
        padded = np.ascontiguousarray(np.swapaxes(padded, 0, 1))
    return padded, lengths


def pack_like(padded, packed):
    """A time-major padded (L, N, *F) array -> a PackedSequence with the structure (batch
    sizes, index order) of ``packed``, and of its type: torch's when ``packed`` is torch's
    (torch is then necessarily installed), else rnnlab's."""
    sizes = to_numpy(packed.batch_sizes, "batch_sizes").astype(np.int64)
    N = int(sizes[0])
    sorted_idx = getattr(packed, "sorted_indices", None)
    order = np.arange(N) if sorted_idx is None else to_numpy(sorted_idx).astype(np.int64)
    data = np.concatenate([padded[t, order[:b]] for t, b in enumerate(sizes)])
    if type(packed).__module__.split(".")[0] == "torch":
        import torch
        return type(packed)(torch.from_numpy(data), packed.batch_sizes, packed.sorted_indices,
                            packed.unsorted_indices)
    unsorted = None if sorted_idx is None else np.argsort(order)
    return PackedSequence(data, sizes, None if sorted_idx is None else order, unsorted)


def to_packed(padded, lengths, batch_first=False):
    """(padded, lengths) -> PackedSequence (NumPy fields), the inverse of ``from_packed``;
    the same fields as torch's pack_padded_sequence(enforce_sorted=False)."""
    x = to_numpy(padded, "padded")
    if x.ndim < 2:
        raise ShapeError(f"padded must be (L, N, *F) or (N, L, *F), got shape {x.shape}")
    if batch_first:
        x = np.swapaxes(x, 0, 1)
    T, N = x.shape[:2]
    lengths = check_lengths(lengths, T, N)
    perm, sizes = batch_sizes_for(lengths, T)
    sizes = sizes[sizes > 0].astype(np.int64)
    return pack_like(x, PackedSequence(None, sizes, perm.astype(np.int64), None))
