"""The one sequence driver: any cell family over time, layers, directions, dropout and
variable lengths, forward and backpropagation through time (driver.py); the records it
passes (records.py); lengths and PackedSequence conversion (packed.py); and the buffer
pool that spares page faults (pool.py). Depends on rnnlab.cells only."""
from .driver import backward, dropout_mask, forward, run_backward, run_forward
from .packed import PackedSequence, batch_sizes_for, check_lengths, from_packed, to_packed
from .records import Cache, LayerWeights

__all__ = ["forward", "backward", "run_forward", "run_backward", "dropout_mask",
           "PackedSequence", "batch_sizes_for", "check_lengths", "from_packed", "to_packed",
           "Cache", "LayerWeights"]
