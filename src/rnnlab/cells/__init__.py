"""Cell families: what one step of RNN, GRU or LSTM computes, forward and backward.

One module per family (rnn.py, gru.py, lstm.py) holds its equations, a fast step and
back (the contract in family.py, used by the sequence driver), a plain step and back (one
sequence, readable, used by rnnlab.reference), the scalar units the compiled loops are
made from, and one ``Family`` record (family.py). Everything else in rnnlab — driver,
kernels, layers, cells, explain, conformance, gradcheck, bench, converters — reads
families from ``FAMILIES``; adding a family is its module plus one ``register`` line
below (docs/families.md shows a complete example).
"""
from . import gru, gru_reset_before, lstm, rnn
from .family import Family, Units, from_framework, to_framework

FAMILIES = {}       # kind -> Family
_BY_MODE = {}       # mode -> Family


def register(family):
    """Add a family; layers, cells, explain, gradcheck and bench then offer it."""
    if family.kind in FAMILIES and FAMILIES[family.kind] is not family:
        raise ValueError(f"a cell family named {family.kind!r} is already registered")
    FAMILIES[family.kind] = family
    _BY_MODE[family.mode] = family
    return family


def unregister(kind):
    family = FAMILIES.pop(kind)
    _BY_MODE.pop(family.mode, None)


def by_mode(mode):
    """The family of torch's mode string ``mode``; a Family record (a variant's, built by
    cells/variants.py and not registered) is its own answer."""
    if isinstance(mode, Family):
        return mode
    try:
        return _BY_MODE[mode]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mode {mode!r}; registered: {sorted(_BY_MODE)}") from None


def by_kind(kind):
    """The family registered as ``kind``; a Family record is its own answer (by_mode)."""
    if isinstance(kind, Family):
        return kind
    try:
        return FAMILIES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell family {kind!r}; choose from {sorted(FAMILIES)}") \
            from None


def variant(kind, **options):
    """The family computing what torch's class of family ``kind`` computes with
    ``options`` (e.g. variant("rnn", nonlinearity="relu") is "rnn_relu"), or a ValueError
    naming the option that class does not take."""
    fam = by_kind(kind)
    cls = fam.torch_class or fam.layer_class
    same = [f for f in FAMILIES.values()
            if cls is not None and (f.torch_class or f.layer_class) == cls]
    for key in options:
        if not any(key in f.options for f in same):
            takers = sorted(f.kind for f in FAMILIES.values() if key in f.options and f.listed)
            raise ValueError(f"{key} is only for {' and '.join(takers)}, not {kind}")
    for f in same:
        if all(f.options.get(k) == v for k, v in options.items()):
            return f
    raise ValueError(f"no family {kind} with {options}; registered: "
                     f"{[f.options for f in same]}")


for _family in (rnn.TANH, rnn.RELU, gru.FAMILY, gru_reset_before.FAMILY, lstm.FAMILY):
    register(_family)

__all__ = ["Family", "Units", "FAMILIES", "register", "unregister", "by_mode", "by_kind",
           "variant", "to_framework", "from_framework"]
