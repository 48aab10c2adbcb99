"""When calls are recorded for backward: the rule, per thread.

A module records a call (keeps what its backward needs) when grad mode is on. By default
grad mode follows the module: on in training mode, off in eval mode, so inference loops
run at bounded memory without any ceremony. ``with rnnlab.no_grad():`` turns it off and
``with rnnlab.enable_grad():`` turns it on, whatever the mode (e.g. input gradients of a
model in eval mode). Both are per thread, like torch's grad mode, and work as decorators.
"""
import contextlib
import threading

_LOCAL = threading.local()


def _stack():
    stack = getattr(_LOCAL, "stack", None)
    if stack is None:
        stack = _LOCAL.stack = [None]
    return stack


@contextlib.contextmanager
def _mode(value):
    stack = _stack()
    stack.append(value)
    try:
        yield
    finally:
        stack.pop()


def no_grad():
    """Record nothing in this thread: no backward records, no cell tape, no step records."""
    return _mode(False)


def enable_grad():
    """Record in this thread even for modules in eval mode."""
    return _mode(True)


def is_recording(module):
    """Whether ``module``'s next call in this thread is recorded."""
    override = _stack()[-1]
    return module.training if override is None else override


def why_not_recorded(module):
    if _stack()[-1] is False:
        return "it ran inside rnnlab.no_grad()"
    return ("the module is in eval mode, where calls are not recorded (bounded memory for "
            "inference); call .train(), or run the forward inside rnnlab.enable_grad()")
