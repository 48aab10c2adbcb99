"""Buffers on cache lines (sequence/pool.py, aligned_empty): the parameters, the step
snapshots' weights and every scratch buffer of ALIGN_MIN bytes or more start on a 64-byte
boundary (NumPy's allocator gives 16), and such an array still counts as owning its
memory wherever ownership decides something (the pool's reuse of dropped gradients, a
first gradient adopted without a copy)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
import rnnlab.sequence.pool as pool_module
from rnnlab.nn import make_layer
from rnnlab.sequence.pool import ALIGN, ALIGN_MIN, aligned_copy, aligned_empty, owns_memory


def _on_line(a):
    return a.ctypes.data % ALIGN == 0


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(0, 40), min_size=0, max_size=3),
       dtype=st.sampled_from([np.float32, np.float64, np.int64, np.uint8, np.int16]),
       least=st.sampled_from([0, 64, ALIGN_MIN]))
def test_aligned_empty_is_an_owning_array_on_a_line(shape, dtype, least):
    a = aligned_empty(shape, dtype, least)
    assert a.shape == tuple(shape) and a.dtype == np.dtype(dtype)
    assert a.flags.c_contiguous and a.flags.writeable and owns_memory(a)
    assert _on_line(a) or a.nbytes < least
    a[...] = 1                                   # all of it writable, nothing beyond
    assert int(a.sum()) == a.size
    view = a.reshape(-1)[1:]
    assert not owns_memory(view) and view.base is a      # views hold the array itself


def test_aligned_copy_and_plain_arrays():
    x = np.arange(3000, dtype=np.float32).reshape(30, 100)[:, ::2]
    c = aligned_copy(x)
    np.testing.assert_array_equal(c, x)
    assert _on_line(c) and c.flags.c_contiguous and owns_memory(c)
    assert owns_memory(np.empty(5)) and not owns_memory(x)


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "gru", "lstm"])
def test_parameters_start_on_a_line_also_after_to_and_loading(kind):
    m = make_layer(kind, 7, 33, num_layers=2, bidirectional=True, seed=0)
    assert all(_on_line(p) for _, p in m.named_parameters())
    values = {n: p.copy() for n, p in m.named_parameters()}
    m.to(np.float64)
    assert all(_on_line(p) and p.dtype == np.float64 for _, p in m.named_parameters())
    m.to(np.float32).load_state_dict(values)
    for n, p in m.named_parameters():
        assert _on_line(p)
        np.testing.assert_array_equal(p, values[n])


@pytest.mark.parametrize("H", [64, 256])
def test_step_snapshots_and_scratch_start_on_a_line(H):
    m = rnnlab.LSTM(H, H, seed=0)
    for w in m.freeze()._weights:
        arrays = [v for v in w if isinstance(v, np.ndarray) and v.nbytes >= ALIGN_MIN]
        assert arrays and all(_on_line(a) for a in arrays)
    m.train()
    x = np.ones((20, 4, H), np.float32)
    y, _ = m(x)
    m.backward(np.ones_like(y))
    free = [a for stack in m._records.pool._free.values() for a in stack]
    assert free and all(_on_line(a) for a in free if a.nbytes >= ALIGN_MIN)


def test_a_dropped_aligned_gradient_is_reused_only_when_nothing_holds_it(monkeypatch):
    """Pool.reuse counts references to the array itself (views of it hold it), as for an
    owning array: a view kept alive blocks the reuse."""
    monkeypatch.setattr(pool_module, "POOL_WEIGHTS_MIN", 0)
    p = pool_module.Pool()
    dropped = [aligned_empty((64, 64), np.float32), aligned_empty((64, 64), np.float32)]
    view = dropped[1][:2]                        # someone still reads the second one
    ids = [id(a) for a in dropped]
    p.reuse(dropped)
    assert dropped == []
    kept = [id(a) for stack in p._free.values() for a in stack]
    assert kept == [ids[0]] and id(view.base) == ids[1]
