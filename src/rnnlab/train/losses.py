"""Losses returning the value and its gradient together (float64 or float32, as given).

    loss, d_logits = cross_entropy(logits, target)      # logits (M, C), target (M,) ints
    loss, d_pred = mse(pred, target)

reduction "mean" (default) and "sum" return a float and the gradient of that float;
"none" returns the per-element losses and, row by row, the gradient of each element's
loss (rows are independent), so ``d`` weighted by an upstream gradient is the chain rule.
"""
import numpy as np

from ..checks import to_numpy
from ..errors import ShapeError

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(value):
    if value not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {value!r}")
    return value


def _float(value, name):
    arr = to_numpy(value, name)
    if arr.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {arr.dtype}")
    return arr


def cross_entropy(logits, target, ignore_index=-100, reduction="mean"):
    """torch.nn.functional.cross_entropy for logits (M, C) and class indices (M,):
    loss_i = logsumexp(logits_i) - logits_i[target_i], rows with target == ignore_index
    left out (mean over the rest, as torch). Stable for large logits. Returns
    (loss, d_logits)."""
    x = _float(logits, "logits")
    reduction = _reduction(reduction)
    if x.ndim != 2:
        raise ShapeError(f"logits must be (M, C), got shape {x.shape}")
    t = to_numpy(target, "target")
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {t.dtype}")
    if t.shape != (x.shape[0],):
        raise ShapeError(f"target must have shape ({x.shape[0]},) for logits {x.shape}, got "
                         f"{t.shape}")
    keep = t != ignore_index
    if np.any((t[keep] < 0) | (t[keep] >= x.shape[1])):
        bad = t[keep][(t[keep] < 0) | (t[keep] >= x.shape[1])][:5].tolist()
        raise ValueError(f"target must be in 0..{x.shape[1] - 1} (or ignore_index "
                         f"{ignore_index}), got {bad}")
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):
        shift = x - x.max(axis=1, keepdims=True)             # stable: max logit is 0
        e = np.exp(shift)
        total = e.sum(axis=1, keepdims=True)
        logp = shift - np.log(total)                          # log softmax (M, C)
        rows = np.arange(x.shape[0])
        safe = np.where(keep, t, 0)
        per = np.where(keep, -logp[rows, safe], 0.0).astype(x.dtype)
        d = e / total                                         # softmax
        d[rows, safe] -= 1                                    # d loss_i / d logits_i
        d[~keep] = 0
    if reduction == "none":
        return per, d.astype(x.dtype, copy=False)
    n = int(keep.sum())
    with np.errstate(over="ignore", invalid="ignore"):
        if reduction == "sum":
            return float(per.sum()), d.astype(x.dtype, copy=False)
        if n == 0:                                           # torch: nan for an all-ignored mean
            return float("nan"), np.zeros_like(x)
        return float(per.sum() / n), (d / n).astype(x.dtype, copy=False)


def mse(pred, target, reduction="mean"):
    """torch.nn.functional.mse_loss: mean (or sum) of (pred - target)^2. Returns
    (loss, d_pred)."""
    p = _float(pred, "pred")
    reduction = _reduction(reduction)
    t = to_numpy(target, "target")
    if t.shape != p.shape:
        raise ShapeError(f"target must have the shape of pred {p.shape}, got {t.shape}")
    with np.errstate(over="ignore", invalid="ignore"):
        diff = p - t.astype(p.dtype)
        per = diff * diff
        d = 2 * diff
        if reduction == "none":
            return per, d
        if reduction == "sum":
            return float(per.sum()), d
        if p.size == 0:                                      # torch: nan for an empty mean
            return float("nan"), d
        return float(per.mean()), d / p.size
