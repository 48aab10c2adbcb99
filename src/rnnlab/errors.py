"""The exceptions rnnlab raises besides plain ValueError / TypeError.

Each is a ValueError (what bad input raises in Python) and a RuntimeError (what torch
raises for the same mistakes), so code written for either keeps working.
"""


class ShapeError(ValueError, RuntimeError):
    """Bad shape or size."""


class BackwardError(ValueError, RuntimeError):
    """backward called without a matching forward record, or with gradients of the wrong
    shape or kind."""


class StateDictError(ValueError, RuntimeError):
    """load_state_dict found missing/unexpected keys or shape mismatches (all listed)."""


class StateDictTypeError(StateDictError, TypeError):
    """load_state_dict found a value that is no real array (complex, text, ...); also a
    TypeError, as every wrong kind of value is in rnnlab."""


class DTypeError(ValueError, TypeError, RuntimeError):
    """An array of the wrong dtype (torch: "input must have the type ..."). Also a
    TypeError, so either ``except`` works."""
