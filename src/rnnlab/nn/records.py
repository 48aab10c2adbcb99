"""Per-thread call records of a module: what a later backward needs, and the buffers.

Each thread has its own records (``ThreadRecords``): two threads running forward and
backward on one layer never see each other's calls. A record names the module that made
it, so it cannot be handed to another module's backward.
"""
import threading
import weakref

from ..errors import BackwardError
from ..sequence import run_backward, run_forward
from ..sequence.pool import PLAIN, Pool
from ..tuning import POOL_MIN
from . import arguments as A
from .grad_mode import is_recording


class ThreadRecords(threading.local):
    """One module's records in the current thread."""

    def __init__(self):
        self.last_call = None          # the most recent recorded forward (layers)
        self.freed = False             # ... was freed by its backward
        self.unrecorded_reason = None  # why the most recent forward was not recorded
        self.last_dropout_masks = []
        self.steps = []                # layer.step records, last in first out
        self.tape = []                 # cell calls, last in first out
        self.pool = Pool()


def last_recorded(module):
    """This thread's most recent recorded forward of ``module``, or a BackwardError saying
    why there is none (no forward yet, or why it was not recorded)."""
    rec = module._records
    if rec.last_call is None:
        why = rec.unrecorded_reason
        raise BackwardError(f"{type(module).__name__}.backward: " + (
            FREED if rec.freed else "called before forward" if why is None else
            f"the most recent forward was not recorded: {why}"))
    return rec.last_call


class Call:
    """What one recorded layer forward or step leaves for its backward."""
    __slots__ = ("cache", "layout", "output", "h_n", "c_n", "owner", "packed", "lease",
                 "__weakref__")

    def __init__(self, cache, layout, output, h_n, c_n, owner, packed=None, lease=PLAIN):
        self.cache, self.layout = cache, layout
        self.output, self.h_n, self.c_n = output, h_n, c_n
        self.owner = weakref.ref(owner)
        self.packed = packed           # the input PackedSequence's structure, or None
        self.lease = lease             # the forward's buffers

    def free(self):
        """Forget what backward needs and give the buffers back (torch frees a graph's
        saved values the same way after backward)."""
        self.cache = None
        self.lease.release()


FREED = ("Trying to backward through the graph a second time: the forward's saved values "
         "were freed by the first backward. Pass retain_graph=True to the first backward "
         "to call it again")


def run_call(layer, input, hx, lengths, dropout_masks, step):
    """Check, run the driver for ``layer`` and make the call record (None when not
    recording). Returns (call, result) with result as the layer returns it."""
    x, h0, c0, lengths, masks, lay = A.prepare(layer, input, hx, lengths, dropout_masks, step)
    record = is_recording(layer)
    rec = layer._records
    if not step:
        rec.last_call = None            # unless the caller keeps it, its buffers may serve
        rec.freed = False               # this call
    small = not record and x.size * layer.hidden_size < POOL_MIN     # e.g. batch-1 steps
    lease = PLAIN if small else rec.pool.lease()        # pooling only pays for big buffers
    try:
        (out, h_n, c_n), cache = run_forward(
            layer.family, x, layer.weights(), h0, c0, dropout=layer.dropout,
            training=layer.training, rng=layer._rng, lengths=lengths, masks=masks,
            lease=lease, record=record, reverse=getattr(layer, "direction", "") == "reverse")
    finally:
        if not record:
            lease.release()
    output = lay.seq_out(out).view()    # a view of its own: the record's stays writeable
    output.flags.writeable = False      # backward reads it: copy before changing in place
    h_n = lay.state_out(h_n)
    c_n = None if c_n is None else lay.state_out(c_n)
    rec.last_dropout_masks = [None if m is None else lay.seq_out(m)
                              for m in cache.dropout_masks]
    call = None
    if record:
        call = Call(cache, lay, output, h_n, c_n, layer, lease=lease)
        weakref.finalize(call, lease.release)   # buffers go back when the record is garbage
    return call, ((output, (h_n, c_n)) if c_n is not None else (output, h_n))


def call_gradients(layer, call, d_output, d_h_n, d_c_n, dh_norms=False, lease=None):
    """rnnlab.sequence.backward for one call record, upstream gradients given in the user's
    layout (checked); returns the driver's dict, nothing added to ``grads``. lease: the
    scratch and weight gradients' buffers (bptt.run_backward), released by the caller."""
    if call.cache is None:
        raise BackwardError(FREED)
    lay = call.layout
    dout = A.upstream(layer, d_output, call.output, lay.seq_in, "d_output")
    dh = A.upstream(layer, d_h_n, call.h_n, lay.state_in, "d_h_n")
    dc = None if call.c_n is None else A.upstream(layer, d_c_n, call.c_n, lay.state_in, "d_c_n")
    return run_backward(call.cache, dout, dh, dc, dh_norms=dh_norms, pool=layer._records.pool,
                        lease=lease)


def backprop_call(layer, call, d_output, d_h_n, d_c_n, retain_graph=False):
    """Gradients for one call record; adds the parameter gradients into ``grads`` only
    after everything is checked and computed, then frees the record unless retain_graph.
    Returns (dx, dh0[, dc0]) in the user's layout."""
    lay = call.layout
    back = call.lease.joined()         # the backward's buffers: pooled with the forward's
    adopted = []                       # first gradients: the module's own, not the pool's
    try:
        g = call_gradients(layer, call, d_output, d_h_n, d_c_n, lease=back)
        layer._add_grads(((n, dw) for names, dws in zip(layer.names(), g["dweights"])
                          for layer_names, layer_dws in zip(names, dws)
                          for n, dw in zip(layer_names, layer_dws)), adopted)
    finally:
        back.forget(adopted)
        back.release()
    if not retain_graph:
        call.free()
        if layer._records.last_call is call:
            layer._records.last_call = None
            layer._records.freed = True
    dx, dh0 = lay.seq_out(g["dx"]), lay.state_out(g["dh0"])
    return (dx, dh0) if g["dc0"] is None else (dx, dh0, lay.state_out(g["dc0"]))
