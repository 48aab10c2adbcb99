"""The common inference call's short way (driver._one_way): unrecorded, one direction,
no lengths, no dropout masks. Each layer runs as run_forward runs it, so the outputs,
states and named masks are run_forward's to the bit, whichever path each layer takes
(NumPy loop, compiled loop, a batch's halves, the pair); the calls it does not serve
(recorded, bidirectional, lengths, masks given or drawn) take run_forward as before."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab.cells import FAMILIES
from rnnlab.nn import make_layer, records
from rnnlab.sequence import driver, run_forward

KINDS = sorted(FAMILIES)


def _both(layer, x, hx):
    """The layer's call, and the same call through run_forward's general loop (dropout
    masks given, all None: nothing applied, the short way not taken)."""
    with rnnlab.no_grad():
        got = layer(x, hx)
        masks = layer.last_dropout_masks
        want = layer(x, hx, dropout_masks=[None] * (layer.num_layers - 1))
        want_masks = layer.last_dropout_masks
    return got, want, masks, want_masks


def _short_ways(call):
    """How many times call() took driver._one_way."""
    taken, real = [], driver._one_way
    driver._one_way = lambda *a: taken.append(1) or real(*a)
    try:
        call()
    finally:
        driver._one_way = real
    return len(taken)


def _flat(result):
    out, state = result
    return [out] + (list(state) if isinstance(state, tuple) else [state])


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(KINDS), T=st.integers(1, 12), N=st.integers(0, 6),
       H=st.integers(1, 9), L=st.integers(1, 3), f64=st.booleans(), with_hx=st.booleans(),
       batch_first=st.booleans(), unbatched=st.booleans(), train=st.booleans(),
       seed=st.integers(0, 2 ** 16))
def test_the_short_way_gives_run_forwards_bits(kind, T, N, H, L, f64, with_hx, batch_first,
                                               unbatched, train, seed):
    dt = np.float64 if f64 else np.float32
    layer = make_layer(kind, 3, H, num_layers=L, batch_first=batch_first, seed=seed,
                       dropout=0.3 if L > 1 else 0.0, dtype=dt).train(train)
    rng = np.random.default_rng(seed)
    shape = (T, 3) if unbatched else ((N, T, 3) if batch_first else (T, N, 3))
    x = rng.standard_normal(shape).astype(dt)
    hx = None
    if with_hx:
        s = (L, H) if unbatched else (L, N, H)
        h = rng.standard_normal(s).astype(dt)
        hx = (h, rng.standard_normal(s).astype(dt)) if layer.family.has_cell_state else h
    if train and L > 1:                   # dropout drawn: run_forward's own way
        with rnnlab.no_grad():
            assert not _short_ways(lambda: layer(x, hx))
        return
    got, want, masks, want_masks = _both(layer, x, hx)
    for a, b in zip(_flat(got), _flat(want)):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert not _flat(got)[0].flags.writeable
    assert masks == want_masks == [None] * (L - 1)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("shape", [(50, 16, 32, 32), (30, 1, 64, 128), (20, 4, 16, 64)])
def test_the_short_way_on_the_fast_paths(kind, shape):
    """Shapes that take the compiled loops, a batch's halves and the pair: the same bits
    as run_forward (and NaN in the input stays where torch puts it: that row only)."""
    T, N, I, H = shape
    layer = make_layer(kind, I, H, seed=1, num_layers=2).eval()
    x = np.random.default_rng(2).standard_normal((T, N, I)).astype(np.float32)
    x[T // 2, 0, 0] = np.nan
    got, want, _, _ = _both(layer, x, None)
    for a, b in zip(_flat(got), _flat(want)):
        np.testing.assert_array_equal(a, b)
    out = _flat(got)[0]
    assert np.isnan(out[T // 2:, 0]).all() and not np.isnan(out[:T // 2]).any()
    if N > 1:
        assert not np.isnan(out[:, 1:]).any()


def test_which_calls_take_the_short_way(monkeypatch):
    """Recorded, bidirectional, lengths and given masks go through run_forward."""
    seen = []

    def counted(*a, **k):                    # run_forward's general loop, or the short way
        if _short_ways(lambda: result.append(run_forward(*a, **k))):
            seen.append("plain")
        else:
            seen.append("run_forward")
        return result.pop()
    result = []
    monkeypatch.setattr(records, "run_forward", counted)
    x = np.ones((4, 2, 3), np.float32)
    lstm = rnnlab.LSTM(3, 5, num_layers=2)
    with rnnlab.no_grad():
        lstm(x)
        lstm(x, lengths=[4, 2])
        lstm(x, dropout_masks=[None])
        rnnlab.LSTM(3, 5, bidirectional=True)(x)
    lstm(x)                                  # training mode, recorded
    lstm.eval()(x)
    assert seen == ["plain", "run_forward", "run_forward", "run_forward", "run_forward",
                    "plain"]


def test_the_affinity_is_read_again_after_a_second(monkeypatch):
    """blas.usable_cpus reads the CPU affinity at most once every CPUS_AGAIN seconds (a
    call asks several times), and sees a change after that."""
    from rnnlab.sequence import blas
    now, cpus, reads = [100.0], [{0, 1}], []
    monkeypatch.setattr(blas.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(blas.os, "sched_getaffinity", lambda pid: reads.append(pid) or cpus[0])
    monkeypatch.setattr(blas, "_CPUS", {"pid": None, "until": 0.0, "n": 1})  # put back after
    assert blas.usable_cpus() == 2 and blas.usable_cpus() == 2 and len(reads) == 1
    cpus[0] = {0}
    now[0] += blas.CPUS_AGAIN / 2
    assert blas.usable_cpus() == 2 and len(reads) == 1
    now[0] += blas.CPUS_AGAIN
    assert blas.usable_cpus() == 1 and len(reads) == 2


def test_plain_arrays_skip_the_duck_tests():
    """A float ndarray is taken as it is (no copy); other inputs as before."""
    from rnnlab.checks import to_numpy
    from rnnlab.sequence import PackedSequence
    from rnnlab.sequence.packed import is_packed
    x = np.ones((2, 3), np.float32)
    assert to_numpy(x) is x and not is_packed(x)
    assert to_numpy([[1, 2]]).dtype.kind == "i"
    assert is_packed(PackedSequence(np.ones((3, 2)), np.array([2, 1]), None, None))
    with pytest.raises(TypeError):
        to_numpy(np.array(["a"]))
