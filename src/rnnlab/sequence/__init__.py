"""The one sequence driver: any cell family over time, layers, directions, dropout and
variable lengths: forward (driver.py), backpropagation through time (bptt.py), the checked
public entry points (checked.py); the records they pass (records.py); lengths and
PackedSequence conversion (packed.py); the buffer pool that spares page faults (pool.py);
the one-step path of layer.step and freeze() (stepper.py); the compiled kernels
(kernels.py, _compiled.py, _loops.py) and the per-step products (linalg.py). Depends on
rnnlab.cells only."""
from .bptt import run_backward
from .checked import backward, forward
from .driver import dropout_mask, run_forward
from .packed import PackedSequence, batch_sizes_for, check_lengths, from_packed, to_packed
from .records import Cache, LayerWeights

__all__ = ["forward", "backward", "run_forward", "run_backward", "dropout_mask",
           "PackedSequence", "batch_sizes_for", "check_lengths", "from_packed", "to_packed",
           "Cache", "LayerWeights"]
