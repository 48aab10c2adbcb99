"""Bidirectional layers running their two directions at once (pair.run_both): the caller
computes one direction while the pair's worker thread computes the other.

Which thread ran the second direction depends on the machine, so every way it can go is
checked for the same numbers: the worker, the caller after the worker failed, the caller
when another thread holds the pair; and whole layers against torch and against
set_num_threads(1) (the same compiled loop: equal to the bit)."""
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import blas, driver, kernels, pair
from torch_pairs import (equal_bits, in_threads, one_thread, three_calls_equal_torch,
                         who_ran_second)

needs_pair = pytest.mark.skipif(not (kernels.available() and pair.possible()),
                                reason="the pair runs on Linux x86-64, 2 CPUs, OpenBLAS")


@pytest.fixture
def both(monkeypatch):
    """Directions at once for any size (the threshold is for speed only), the caller's
    direction started late (so that the worker runs the other); yields the list of who
    ran each call's second direction (True: the worker)."""
    monkeypatch.setattr(pair, "DIRECTIONS_MIN", 0)
    ran = who_ran_second(monkeypatch, 0.05)
    yield ran
    pair._state.update(cool=0.0, low=0)


@needs_pair
@pytest.mark.parametrize("cls, kw", [(LSTM, {}), (GRU, {}), (RNN, {"nonlinearity": "relu"}),
                                     (LSTM, {"bias": False, "batch_first": True})])
def test_layers_equal_torch_and_the_one_thread_path(cls, kw, both):
    om, calls, got = three_calls_equal_torch(cls, kw, T=9, N=3)   # zeros, given, unbatched
    assert both == [True] * 3 * 2                             # 2 layers per call
    for args, g in zip(calls, got):
        equal_bits(g, one_thread(om, *args))


@needs_pair
def test_a_failure_in_the_worker_is_run_again_here(monkeypatch, both):
    m = GRU(4, 8, bidirectional=True, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 4)).astype(np.float32)
    want = one_thread(m, x)
    real = driver._aside

    def fails_in_the_worker(direction, d):
        if threading.current_thread().name == "rnnlab-pair":
            raise MemoryError("the worker's allocation")
        return real(direction, d)
    monkeypatch.setattr(driver, "_aside", fails_in_the_worker)
    with rnnlab.no_grad():
        got = m(x)
    equal_bits(got, want)
    assert both == [False]


@needs_pair
def test_one_after_the_other_when_another_thread_has_the_pair(both):
    m = LSTM(4, 8, bidirectional=True, dtype=np.float32, seed=0)
    x = np.ones((6, 2, 4), np.float32)
    want = one_thread(m, x)
    with pair._state["lock"], rnnlab.no_grad():
        got = m(x)
    equal_bits(got, want)
    assert both == [None]


@needs_pair
def test_a_worker_without_a_core_cools_down(monkeypatch, both):
    """Two calls running where the worker never came: the next PAIR_COOL seconds of
    calls run one after the other, on one OpenBLAS thread, with the same numbers."""
    monkeypatch.setattr(pair, "PAIR_COOL", 60.0)
    m = GRU(4, 8, bidirectional=True, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 2, 4)).astype(np.float32)
    want = one_thread(m, x)
    monkeypatch.setattr(pair, "_worker", lambda **kw: type("W", (), {"jobs": _Sink()})())
    get, put = pair._blas()
    before = get()
    put(2)                                       # what it holds to one thread
    monkeypatch.setattr(blas, "_HOLD", dict(blas._HOLD, count=0))
    seen = []
    monkeypatch.setattr(driver, "_aside", lambda direction, d: (
        seen.append(get()), direction(d, driver.PLAIN, False, True))[1])
    with rnnlab.no_grad():
        equal_bits(m(x), want)
        assert pair._state["cool"] < time.monotonic()      # once: a hiccup
        equal_bits(m(x), want)
        assert pair._state["cool"] > time.monotonic() + 30
        equal_bits(m(x), want)
    assert get() == 2
    put(before)
    assert both == [False, False, None] and seen == [1, 1, 1]


class _Sink:
    def put(self, job):
        pass


@needs_pair
def test_run_both_waits_for_the_worker_before_raising():
    finished = []

    def first():
        time.sleep(0.05)                        # the worker is well into second by now
        raise ValueError("first failed")

    def second():
        time.sleep(0.2)
        finished.append(True)
    with pytest.raises(ValueError, match="first failed"):
        pair.run_both(first, second)
    assert finished == [True]
    assert pair._state["lock"].acquire(blocking=False)
    pair._state["lock"].release()


@needs_pair
@pytest.mark.filterwarnings("error")
def test_overflow_in_the_worker_is_quiet_and_propagates_as_torch(both):
    """float32 overflow to inf (and inf - inf = NaN) inside the worker's direction: no
    RuntimeWarning there either (np.errstate is per thread)."""
    m = LSTM(1, 8, bidirectional=True, dtype=np.float32, seed=0)
    sd = m.state_dict()
    for d in ("", "_reverse"):                  # x W_ih^T + b overflows in NumPy's add
        sd[f"weight_ih_l0{d}"] = np.ones((32, 1), np.float32)
        sd[f"bias_ih_l0{d}"] = np.full(32, 3e38, np.float32)
    m.load_state_dict(sd)
    x = np.full((5, 2, 1), 3e38, np.float32)
    x[2, 1, 0] = -np.inf
    got = m.eval()(x)
    equal_bits(got, one_thread(m, x))
    assert both == [True]


@needs_pair
def test_recording_calls_and_lengths_never_take_it(both):
    m = GRU(3, 8, bidirectional=True, dtype=np.float32, seed=0)
    x = np.ones((5, 2, 3), np.float32)
    m(x)                                                   # training mode: recorded
    with rnnlab.no_grad():
        m(x, lengths=[5, 3])
        m(rnnlab.to_packed(x, [5, 3]))
    assert both == []


@needs_pair
def test_the_workers_scratch_is_bounded_and_given_back(both):
    m = LSTM(8, 16, bidirectional=True, dtype=np.float32, seed=0)
    with rnnlab.no_grad():
        for T in (50, 5, 20):
            m(np.ones((T, 2, 8), np.float32))
            held = max(p.bytes for p in driver.ASIDE_POOLS)
            assert 0 < held <= 2 * (T * 2 * 4 * 16 * 4 + 2 * 4 * 16 * 4) + 4096
    rnnlab.empty_cache()
    assert all(p.bytes == 0 for p in driver.ASIDE_POOLS)


@needs_pair
def test_callers_on_many_threads_get_their_numbers(monkeypatch):
    """Four threads calling bidirectional layers at once: one has the worker, the others
    run their second direction themselves, each from its own scratch pool."""
    monkeypatch.setattr(pair, "DIRECTIONS_MIN", 0)
    monkeypatch.setitem(kernels._state, "threads", None)
    pair._state.update(cool=0.0, low=0)
    layers = [GRU(4, 8, bidirectional=True, dtype=np.float32, seed=s) for s in range(4)]
    xs = [np.random.default_rng(s).standard_normal((12, 3, 4)).astype(np.float32)
          for s in range(4)]
    want = [one_thread(m, x) for m, x in zip(layers, xs)]
    got = [None] * 4

    def work(i):
        with rnnlab.no_grad():
            for _ in range(30):
                got[i] = layers[i](xs[i])
    assert not in_threads(work, 4)
    for g, w in zip(got, want):
        equal_bits(g, w)
    pair._state.update(cool=0.0, low=0)


def test_each_thread_runs_a_second_direction_from_a_pool_of_its_own():
    """Scratch pools are not thread-safe: the worker's and a caller's (running its second
    direction itself while the worker runs another caller's) must never be the same."""
    seen, barrier = [], threading.Barrier(2)

    def direction(d, lease, pool_out, alone):
        seen.append(lease.pool)
        barrier.wait(timeout=10)                      # both inside at once
        return d
    threads = [threading.Thread(target=driver._aside, args=(direction, 1)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 2 and seen[0] is not seen[1]


@needs_pair
@settings(max_examples=10, deadline=None)
@given(st.sampled_from([LSTM, GRU, RNN]), st.integers(1, 9), st.integers(1, 5),
       st.integers(1, 20), st.booleans(), st.booleans())
def test_directions_at_once_equal_the_one_thread_path(cls, T, N, H, bias, nan):
    pair.DIRECTIONS_MIN, old = 0, pair.DIRECTIONS_MIN
    kernels._state["threads"] = None
    try:
        m = cls(3, H, bias=bias, bidirectional=True, dtype=np.float32, seed=T)
        x = np.random.default_rng(H).standard_normal((T, N, 3)).astype(np.float32)
        if nan:
            x[T // 2, 0, 1] = np.nan
        with rnnlab.no_grad():
            got = m(x)
        equal_bits(got, one_thread(m, x))
    finally:
        pair.DIRECTIONS_MIN = old
