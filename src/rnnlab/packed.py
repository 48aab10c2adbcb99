"""torch PackedSequence interop, duck-typed (torch is never imported here).

A PackedSequence stores the time steps of a batch sorted by length, longest first:
``data`` (sum(batch_sizes), *F) holds step 0 of every sequence, then step 1 of those still
running, ...; ``batch_sizes[t]`` is how many sequences run at step t; sequence j of the
sorted order is sequence ``sorted_indices[j]`` of the original batch.
"""
import numpy as np

from ._module import to_numpy


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
    data = to_numpy(packed.data)
    sizes = to_numpy(packed.batch_sizes).astype(np.int64)
    if sizes.ndim != 1 or sizes.size == 0 or np.any(np.diff(sizes) > 0) or sizes[-1] < 1:
        raise ValueError(f"batch_sizes must be a non-increasing 1-D sequence of positive "
                         f"counts, got {sizes.tolist()}")
    if data.shape[0] != sizes.sum():
        raise ValueError(f"data has {data.shape[0]} rows but batch_sizes add up to {sizes.sum()}")
    T, N = sizes.size, int(sizes[0])
    sorted_idx = getattr(packed, "sorted_indices", None)
    order = np.arange(N) if sorted_idx is None else to_numpy(sorted_idx).astype(np.int64)
    padded = np.full((T, N) + data.shape[1:], padding_value, dtype=data.dtype)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    for t in range(T):
        padded[t, order[:sizes[t]]] = data[offsets[t]:offsets[t + 1]]
    lengths = np.empty(N, dtype=np.int64)
    lengths[order] = (sizes[None, :] > np.arange(N)[:, None]).sum(axis=1)  # sorted j runs while sizes[t] > j
    if batch_first:
        padded = np.ascontiguousarray(np.swapaxes(padded, 0, 1))
    return padded, lengths
