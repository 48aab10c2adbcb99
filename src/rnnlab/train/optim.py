"""Optimizers over rnnlab modules with torch.optim's semantics and defaults, and two
learning-rate schedules.

    opt = rnnlab.optim.Adam([emb, gru, head], lr=1e-3)
    ... forward, backward ...
    opt.step()          # parameters updated in place from each module's grads
    opt.zero_grad()

A parameter without a gradient (no entry in its module's ``grads``) is skipped, like a
torch parameter whose .grad is None. ``state_dict()`` / ``load_state_dict()`` hold the step
counts and moment estimates, so a run resumes exactly. Changing a module's dtype makes
new parameter arrays: build the optimizer again after ``.to(dtype)``.
"""
import math

import numpy as np

from ..checks import check_bool, check_int, check_real, to_numpy
from .clip import module_list


class Optimizer:
    """The shared bookkeeping: parameters by key "<module index>.<name>", per-parameter
    state, hyper-parameters in ``param_groups[0]`` (one group)."""

    def __init__(self, modules, defaults):
        self.modules = module_list(modules)
        if not self.modules:
            raise ValueError("optimizer got an empty list of modules")
        for key, value in defaults.items():
            if isinstance(value, float) and not value >= 0 and key != "momentum":
                raise ValueError(f"Invalid {key} value: {value}")      # NaN too
        self.param_groups = [dict(defaults)]
        self.state = {}

    @property
    def defaults(self):
        return self.param_groups[0]

    def _params(self):
        """(key, parameter, gradient or None) for every parameter, in order."""
        for i, m in enumerate(self.modules):
            for name, p in m.named_parameters():
                yield f"{i}.{name}", p, m.grads.get(name)

    def zero_grad(self, set_to_none=True):
        for m in self.modules:
            m.zero_grad(set_to_none=set_to_none)

    def step(self):
        group = self.param_groups[0]
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            for key, p, g in self._params():
                if g is not None:
                    self._update(p, g, self.state.setdefault(key, {}), group)
        for m in self.modules:             # layer.freeze() snapshots refresh themselves
            changed = getattr(m, "_changed", None)
            if changed is not None:
                changed()

    def state_dict(self):
        """{"state": {key: {name: value}}, "param_groups": [...]}, arrays copied."""
        return {"state": {k: {n: (v.copy() if isinstance(v, np.ndarray) else v)
                              for n, v in s.items()} for k, s in self.state.items()},
                "param_groups": [dict(g) for g in self.param_groups]}

    def load_state_dict(self, state_dict):
        """Restore a state_dict of the same optimizer over modules of the same shapes;
        every mismatch is reported and nothing is changed."""
        if not hasattr(state_dict, "get") or "state" not in state_dict:
            raise TypeError("load_state_dict expects what state_dict() returned, got "
                            f"{type(state_dict).__name__}")
        params = {k: p for k, p, _ in self._params()}
        problems, new = [], {}
        for key, s in dict(state_dict["state"]).items():
            if key not in params:
                problems.append(f"unexpected parameter {key}")
                continue
            new[key] = {}
            for n, v in dict(s).items():
                arr = to_numpy(v, f"{key}.{n}")
                if arr.ndim == 0:                          # step counts
                    new[key][n] = arr.item()
                elif arr.shape != params[key].shape:
                    problems.append(f"{key}.{n}: expected shape {params[key].shape}, got "
                                    f"{arr.shape}")
                else:
                    new[key][n] = np.array(arr, dtype=params[key].dtype)
        groups = state_dict.get("param_groups", [self.param_groups[0]])
        if (not isinstance(groups, (list, tuple)) or len(groups) != 1
                or not hasattr(groups[0], "keys")
                or set(groups[0]) != set(self.param_groups[0])):
            problems.append(f"param_groups must be one group with keys "
                            f"{sorted(self.param_groups[0])}")
        if problems:
            raise ValueError("optimizer state does not fit (nothing was changed):\n\t"
                             + "\n\t".join(problems))
        try:                                   # the constructor's checks, on the loaded values
            group = type(self)(self.modules, **groups[0]).param_groups[0]
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"optimizer state does not fit (nothing was changed): {exc}") \
                from None
        self.state = new
        self.param_groups = [group]

    def __repr__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.param_groups[0].items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """torch.optim.SGD: p -= lr * (g + weight_decay * p), with momentum (dampening,
    nesterov) as torch: buf = momentum * buf + (1 - dampening) * g (buf = g at first)."""

    def __init__(self, modules, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        lr, momentum, dampening, weight_decay = (
            check_real(n, v) for n, v in (("lr", lr), ("momentum", momentum),
                                          ("dampening", dampening),
                                          ("weight_decay", weight_decay)))
        nesterov = check_bool("nesterov", nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if not momentum >= 0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        super().__init__(modules, dict(lr=lr, momentum=momentum, dampening=dampening,
                                       weight_decay=weight_decay, nesterov=nesterov))

    @staticmethod
    def _update(p, g, state, group):
        d = g if group["weight_decay"] == 0 else g + group["weight_decay"] * p
        mom = group["momentum"]
        if mom != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = np.array(d, copy=True)
            else:
                buf *= mom
                buf += (1 - group["dampening"]) * d
            d = d + mom * buf if group["nesterov"] else buf
        p -= group["lr"] * d


class Adam(Optimizer):
    """torch.optim.Adam (weight_decay added to the gradient, amsgrad optional):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    decoupled = False

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False):
        if not (isinstance(betas, (tuple, list)) or isinstance(betas, np.ndarray)
                and betas.ndim == 1) or len(betas) != 2:
            raise TypeError(f"betas must be a pair of numbers (b1, b2), got "
                            f"{type(betas).__name__}")
        b1, b2 = (check_real(f"betas[{i}]", b) for i, b in enumerate(betas))
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"Invalid beta parameters: {betas}")
        super().__init__(modules, dict(lr=check_real("lr", lr), betas=(b1, b2),
                                       eps=check_real("eps", eps),
                                       weight_decay=check_real("weight_decay", weight_decay),
                                       amsgrad=check_bool("amsgrad", amsgrad)))

    def _update(self, p, g, state, group):
        lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        if wd != 0:
            if self.decoupled:
                p *= 1 - lr * wd                           # AdamW: decay the weights
            else:
                g = g + wd * p                             # Adam: L2 in the gradient
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m += (g - m) * (1 - b1)                            # torch: exp_avg.lerp_(g, 1 - b1)
        v *= b2
        v += (1 - b2) * g * g
        bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
        if group["amsgrad"]:
            np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        denom = np.sqrt(v) / math.sqrt(bc2) + eps
        p -= (lr / bc1) * (m / denom)


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay p *= 1 - lr * weight_decay
    (default 1e-2)."""

    decoupled = True

    def __init__(self, modules, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2,
                 amsgrad=False):
        super().__init__(modules, lr, betas, eps, weight_decay, amsgrad)


class StepLR:
    """lr = base_lr * gamma ** (epoch // step_size); call step() once per epoch/step."""

    def __init__(self, optimizer, step_size, gamma=0.1):
        self.optimizer = optimizer
        self.step_size = check_int("step_size", step_size)
        self.gamma = check_real("gamma", gamma)
        self.base_lr, self.last_epoch = optimizer.param_groups[0]["lr"], 0

    def get_lr(self):
        return self.base_lr * self.gamma ** (self.last_epoch // self.step_size)

    def step(self):
        self.last_epoch += 1
        self.optimizer.param_groups[0]["lr"] = self.get_lr()

    def state_dict(self):
        return {"base_lr": self.base_lr, "last_epoch": self.last_epoch}

    def load_state_dict(self, sd):
        if not hasattr(sd, "keys") or set(sd) != {"base_lr", "last_epoch"}:
            raise TypeError("load_state_dict expects what state_dict() returned (keys "
                            f"base_lr, last_epoch), got {type(sd).__name__}")
        self.base_lr, self.last_epoch = (check_real("base_lr", sd["base_lr"]),
                                         check_int("last_epoch", sd["last_epoch"], minimum=0))


class CosineAnnealingLR(StepLR):
    """lr = eta_min + (base_lr - eta_min) (1 + cos(pi t / T_max)) / 2."""

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer, 1)
        self.T_max, self.eta_min = check_int("T_max", T_max), check_real("eta_min", eta_min)

    def get_lr(self):
        t = self.last_epoch
        return self.eta_min + (self.base_lr - self.eta_min) * (
            1 + math.cos(math.pi * t / self.T_max)) / 2
