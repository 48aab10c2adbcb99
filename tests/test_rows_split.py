"""Unrecorded calls of 3 rows or more on the compiled loop, their rows in two halves: the
caller computes the first half of the batch, the pair's worker the second (halves.py,
pair.rows_wanted). The rows of a batch never meet, so every result equals
the one-thread call's to the bit, whichever thread ran the second half: the worker, the
caller after the worker failed, or the caller when another thread holds the pair."""
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import driver, kernels, pair
from torch_pairs import (SPLIT_CASES, batch_inputs, equal_bits, failing_on_the_worker, one_thread, torch_pair,
                         who_ran_second)

needs_pair = pytest.mark.skipif(not (kernels.available() and pair.possible()),
                                reason="the pair runs on Linux x86-64, 2 CPUs, OpenBLAS")


@pytest.fixture
def halves(monkeypatch):
    """The split for any size (its threshold is for speed only), directions one after
    the other, the caller's half started late (so that the worker runs the other); yields
    the list of who ran each split's second half (True: the worker)."""
    monkeypatch.setattr(pair, "ROWS_SPLIT_MIN", 0)
    monkeypatch.setattr(pair, "DIRECTIONS_MIN", 1 << 62)
    ran = who_ran_second(monkeypatch, 0.02)
    yield ran
    pair._state.update(cool=0.0, low=0)


@needs_pair
@pytest.mark.parametrize("cls, kw", SPLIT_CASES)
def test_layers_equal_torch_and_the_one_thread_path(cls, kw, halves):
    torch, tm, om = torch_pair(cls, kw, 5, 6, 2)
    rng = np.random.default_rng(1)
    N, D = 5, 2 if kw.get("bidirectional") else 1
    x, h0, state = batch_inputs(cls, kw, rng, N, 7, 5, 6)
    tstate = tuple(map(torch.from_numpy, state)) if cls is LSTM else torch.from_numpy(h0)
    for args, targs in (((x,), (torch.from_numpy(x),)),
                        ((x, state), (torch.from_numpy(x), tstate))):
        with rnnlab.no_grad():
            got = om(*args)
        with torch.no_grad():
            want = tm(*targs)
        np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-5, atol=1e-6)
        for a, b in zip(got[1] if cls is LSTM else [got[1]],
                        want[1] if cls is LSTM else [want[1]]):
            np.testing.assert_allclose(a, b.numpy(), rtol=1e-5, atol=1e-6)
        equal_bits(got, one_thread(om, *args))
    assert halves == [True] * 2 * 2 * 2 * D      # 2 layers, 2 calls; projection, loop


@needs_pair
def test_a_failure_in_the_workers_projection_is_run_again_here(monkeypatch, halves):
    """A product's half can run again; a loop's half, which changes its inputs in place,
    cannot: a failure there raises here (never a half-written result)."""
    m = LSTM(4, 8, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((6, 4, 4)).astype(np.float32)
    want = one_thread(m, x)
    real_matmul, real_kernel_for = np.matmul, kernels.kernel_for

    def matmul(*a, **kw):
        if threading.current_thread().name == "rnnlab-pair":
            raise MemoryError("the worker's allocation")
        return real_matmul(*a, **kw)
    monkeypatch.setattr(np, "matmul", matmul)
    with rnnlab.no_grad():
        got = m(x)
    equal_bits(got, want)
    assert halves == [False, True]                  # the projection's half ran here
    monkeypatch.setattr(np, "matmul", real_matmul)
    monkeypatch.setattr(driver, "kernel_for", failing_on_the_worker(real_kernel_for))
    with rnnlab.no_grad(), pytest.raises(RuntimeError, match="cannot be run again"):
        m(x)


@needs_pair
def test_one_thread_when_another_thread_has_the_pair(halves):
    m = GRU(4, 8, dtype=np.float32, seed=0)
    x = np.ones((6, 3, 4), np.float32)
    want = one_thread(m, x)
    with pair._state["lock"], rnnlab.no_grad():
        got = m(x)
    equal_bits(got, want)
    assert halves == [None, None]


@needs_pair
def test_only_calls_of_three_rows_or_more_on_the_compiled_loop(halves):
    m = GRU(3, 8, dtype=np.float32, seed=0)
    x = np.ones((5, 3, 3), np.float32)
    with rnnlab.no_grad():
        m(x, lengths=[5, 3, 2])                            # lengths
        m(x[:, :2])                                        # two rows
        RNN(3, 1, dtype=np.float32, seed=0)(x)             # one unit
        LSTM(3, 8, proj_size=4, dtype=np.float32, seed=0)(x)     # a projection
        GRU(3, 8, dtype=np.float64, seed=0)(x.astype(np.float64))      # float64
    one_thread(m, x)                                      # set_num_threads(1)
    assert halves == []
    with rnnlab.no_grad():
        m(x)
    assert halves == [True, True]
    assert pair.rows_wanted(m.family, np.float32, 5, 3, 24, 8, False)
    pair.ROWS_SPLIT_MIN = 5 * 3 * 24 * 8 + 1                # below the threshold
    assert not pair.rows_wanted(m.family, np.float32, 5, 3, 24, 8, False)


@needs_pair
def test_set_num_threads_1_runs_the_same_halves_here(monkeypatch):
    """With 128 input features OpenBLAS may round a product of some rows differently from
    the same rows inside a larger one; the one-thread call computes the same halves, one
    after the other, so that the numbers never depend on the threads."""
    monkeypatch.setattr(pair, "ROWS_SPLIT_MIN", 0)
    ran = who_ran_second(monkeypatch, 0.005)
    m = LSTM(128, 16, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((33, 5, 128)).astype(np.float32)
    with rnnlab.no_grad():
        got = m(x)
    assert ran == [True, True]
    equal_bits(got, one_thread(m, x))
    assert ran == [True, True]                        # no pair: both halves here


@needs_pair
@pytest.mark.filterwarnings("error")
def test_overflow_in_the_workers_half_is_quiet_and_propagates_as_torch(halves):
    m = LSTM(2, 8, dtype=np.float32, seed=0)
    sd = m.state_dict()
    sd["weight_ih_l0"] = np.ones((32, 2), np.float32)      # x W_ih^T overflows in the
    sd["bias_ih_l0"] = np.full(32, 3e38, np.float32)       # worker's matmul, + b too
    m.load_state_dict(sd)
    x = np.full((5, 4, 2), 3e38, np.float32)
    x[2, 3, 0] = -np.inf
    got = m.eval()(x)
    equal_bits(got, one_thread(m, x))
    assert halves == [True, True]


@needs_pair
@settings(max_examples=15, deadline=None)
@given(st.sampled_from([LSTM, GRU, RNN]), st.integers(1, 9), st.integers(1, 12),
       st.integers(1, 20), st.booleans(), st.booleans(), st.booleans())
def test_halves_equal_the_one_thread_path(cls, T, N, H, bias, reverse, nan):
    pair.ROWS_SPLIT_MIN, old = 0, pair.ROWS_SPLIT_MIN
    kernels._state["threads"] = None
    try:
        m = cls(3, H, bias=bias, direction="reverse" if reverse else "forward",
                dtype=np.float32, seed=T)
        x = np.random.default_rng(H).standard_normal((T, N, 3)).astype(np.float32)
        if nan:
            x[T // 2, N - 1, 1] = np.nan
        with rnnlab.no_grad():
            got = m(x)
        equal_bits(got, one_thread(m, x))
    finally:
        pair.ROWS_SPLIT_MIN = old


@needs_pair
def test_a_spin_sees_a_change_or_gives_up_in_time():
    """What the worker's and the caller's spins wait on (pair._await, compiled)."""
    box, rate = np.zeros(1, np.int64), pair.rate()
    t0 = time.perf_counter()
    assert not pair._await(box, 0, 0, int(0.002 * rate))     # nothing changes: 2 ms
    assert 0.002 <= time.perf_counter() - t0 < 1.0
    timer = threading.Timer(0.01, box.__setitem__, (0, 5))
    timer.start()
    assert pair._await(box, 0, 0, int(30 * rate))
    timer.join()
    assert box[0] == 5


@needs_pair
def test_calls_back_to_back_meet_a_spinning_worker(monkeypatch):
    """Many split calls running: each one's result is its own, whoever ran its half."""
    monkeypatch.setattr(pair, "ROWS_SPLIT_MIN", 0)
    monkeypatch.setitem(kernels._state, "threads", None)
    m = GRU(4, 8, num_layers=2, dtype=np.float32, seed=0)
    xs = [np.random.default_rng(s).standard_normal((5, 3, 4)).astype(np.float32)
          for s in range(20)]
    want = [one_thread(m, x) for x in xs]
    with rnnlab.no_grad():
        for x, w in zip(xs, want):
            equal_bits(m(x), w)
