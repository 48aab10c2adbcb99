"""TorchScript archives (torch.jit.save) read as data: the pickle names the archive's own
module classes (``__torch__.Encoder``, ``__torch__.torch.nn.modules.rnn.GRU``, ...); each
becomes an inert ScriptObject holding the attributes the pickle gives it, and the archive's
``code/`` files are never opened. ``flatten`` then lists the tensors by module path, like
a state_dict: ``encoder.rnn.weight_ih_l0``."""
from . import limits


class ScriptObject:
    """A TorchScript module of an archive, inert: the class name the archive gives it
    (``qualname``) and its attributes (``state``). Made by the unpickler for classes under
    ``__torch__``; nothing of the archive's code is looked at."""

    qualname = "?"

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.state = None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


def script_class(module, name, cache={}):
    key = f"{module}.{name}"
    if key not in cache:
        cache[key] = type("ScriptObject", (ScriptObject,), {"qualname": key})
    return cache[key]


def flatten(obj, budget, tensors):
    """A TorchScript module tree as {"encoder.rnn.weight_ih_l0": tensor, ...}: every
    tensor attribute by its module path (lists of tensors, e.g. RNN's _flat_weights, are
    the same tensors again and are left out)."""
    out, seen, stack = {}, set(), [("", obj, 0)]
    while stack:
        path, o, depth = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        if depth > limits.MAX_DEPTH or len(out) > limits.MAX_ITEMS:
            raise limits.LimitError(f"{budget.path}: the archive's modules nest deeper than "
                                    f"{limits.MAX_DEPTH} or hold more than "
                                    f"{limits.MAX_ITEMS:,} tensors (rnnlab.io.limits)")
        state = o.state if isinstance(o.state, dict) else {}
        children = []
        for k, v in state.items():
            if not isinstance(k, str):
                continue
            if isinstance(v, ScriptObject):
                children.append((f"{path}{k}.", v, depth + 1))
            elif isinstance(v, tensors):
                out[path + k] = v
        stack.extend(reversed(children))          # depth first, in the modules' order
    return out
