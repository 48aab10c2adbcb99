"""Training with rnnlab alone: losses that return value and gradient together
(losses.py), optimizers and learning-rate schedules with torch's semantics (optim.py),
gradient clipping (clip.py), and the tasks, loop and run directories of ``rnnlab train``
(tasks.py, loop.py, checkpoint.py). Depends on rnnlab.nn and rnnlab.io."""
from . import losses, optim
from .clip import clip_grad_norm_, clip_grad_value_

__all__ = ["losses", "optim", "clip_grad_norm_", "clip_grad_value_"]
