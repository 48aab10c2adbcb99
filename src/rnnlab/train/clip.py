"""Gradient clipping over the grads of one module or a list of modules, with torch's
semantics (clip_grad_norm_ and clip_grad_value_ of torch.nn.utils)."""
import math

import numpy as np

from ..checks import check_real


def module_list(modules):
    """One module or an iterable of modules -> a list; anything without ``grads`` and
    ``named_parameters`` is a TypeError."""
    items = [modules] if hasattr(modules, "grads") else list(modules) \
        if hasattr(modules, "__iter__") else [modules]
    for m in items:
        if isinstance(m, np.ndarray):
            raise TypeError("pass the modules, not their parameters: rnnlab keeps each "
                            "gradient on its module (optim.Adam([gru, head]) or "
                            "optim.Adam(model), not optim.Adam(gru.parameters()))")
        if not (hasattr(m, "grads") and hasattr(m, "named_parameters")):
            raise TypeError(f"expected rnnlab modules (with grads), got {type(m).__name__}")
    return items


def _grads(modules):
    return [g for m in module_list(modules) for g in m.grads.values()]


class NonFiniteNormError(ValueError, RuntimeError):
    """clip_grad_norm_(error_if_nonfinite=True) met a NaN or inf norm: torch raises a
    RuntimeError there; this is both."""


def clip_grad_norm_(modules, max_norm, norm_type=2.0, error_if_nonfinite=False):
    """Scale all gradients together so that their global norm is at most max_norm.

    total = the norm_type-norm of all gradients as one vector (inf: the largest |g|);
    every gradient is multiplied by min(1, max_norm / (total + 1e-6)), as torch does.
    Returns total (before clipping). error_if_nonfinite: raise if total is NaN or inf.
    """
    max_norm, norm_type = check_real("max_norm", max_norm), check_real("norm_type", norm_type)
    grads = _grads(modules)
    if not grads:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        if norm_type == math.inf:
            total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
        else:
            norms = [float(np.linalg.norm(g.ravel(), norm_type)) if g.size else 0.0
                     for g in grads]
            total = float(np.linalg.norm(np.array(norms), norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(f"The total norm of order {norm_type} for gradients is non-finite "
                         f"({total}), so it cannot be clipped; set error_if_nonfinite=False "
                         "to clip anyway")
    coef = min(max_norm / (total + 1e-6), 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        for g in grads:
            g *= coef
    return total


def clip_grad_value_(modules, clip_value):
    """Clamp every gradient element into [-clip_value, clip_value], in place."""
    c = check_real("clip_value", clip_value)
    for g in _grads(modules):
        np.clip(g, -c, c, out=g)
