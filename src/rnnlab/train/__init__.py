"""Training with rnnlab alone: losses that return value and gradient together
(losses.py), optimizers and learning-rate schedules with torch's semantics (optim.py),
gradient clipping (clip.py), and the tasks and loop of ``rnnlab train`` (tasks.py,
loop.py). Depends on rnnlab.nn."""
from . import losses, optim
from .clip import clip_grad_norm_, clip_grad_value_

__all__ = ["losses", "optim", "clip_grad_norm_", "clip_grad_value_"]
