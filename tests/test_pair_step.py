"""The pair's step (sequence/pair_step.py): unrecorded batch 1-4 steps of large float32
layers split over the caller and rnnlab's worker thread, which spins for the next step
after serving one. Against torch step by step (live edits seen), equal to the one-thread
row step, and the rules: never when asked not to, a busy pair or a worker without a core
costs time and never a result, a sequence call or another family's step makes a spinning
worker leave, the cool-down, a forked child."""
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.sequence import kernels, pair, pair_step
from torch_pairs import FORK_CHILD, edit_both, script_prints_ok, torch_pair

needs = pytest.mark.skipif(not pair_step.possible(), reason="the pair cannot run here")


@pytest.fixture(autouse=True)
def unset_threads():
    """Every test starts and ends with set_num_threads unset and the pair not cooling."""
    kernels._state["threads"] = None
    pair._state["cool"], pair_step._state["low"], pair_step._state["again"] = 0.0, 0, 0
    yield
    kernels._state["threads"] = None
    pair._state["cool"] = 0.0
    pair.STEP_BOX[pair_step.B_GEN] += 1                   # a spinning worker leaves


def _steps(stepper, xs, state=None):
    ys = []
    for x in xs:
        y, state = stepper.step(x, state)
        ys.append(y)
    return np.stack(ys), state


def _served_while(fn, seconds=5.0):
    """Runs fn until the worker has served a step (it wakes ~30 us after the first), in
    bursts of 50 with pauses between: other threads may hold the second core for a while
    (torch's OpenMP threads spin after each torch call) and the pair cools down."""
    before = pair_step.served()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for _ in range(50):
            fn()
        if pair_step.served() > before:
            return True
        time.sleep(0.06)
    return False


@needs
@pytest.mark.parametrize("cls, kw, H", [(LSTM, {}, 256), (GRU, {}, 256), (RNN, {}, 256),
                                        (LSTM, {"bias": False}, 128),
                                        (RNN, {"nonlinearity": "relu"}, 256)])
def test_steps_on_the_pair_equal_torch_and_see_edits(cls, kw, H):
    torch, tm, om = torch_pair(cls, kw, H, H, 2, 0)
    assert all(s.pair_step is not None for s in om.freeze()._weights)
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((1, H)).astype(np.float32)
    assert _served_while(lambda: om.step(x1))
    for N, edit in ((1, None), (2, "scale"), (4, "nan"), (3, None)):
        edit_both(torch, tm, om, edit, (7, 3))                # in place: seen at once
        xs = rng.standard_normal((6, N, H)).astype(np.float32)
        xs[2, 0, 5] = np.inf
        with torch.no_grad():
            want = tm(torch.from_numpy(xs))[0].numpy()
        for stepper in (om, om.freeze()):
            with np.errstate(all="ignore"):
                got, _ = _steps(stepper, xs)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            fin = np.isfinite(want)
            np.testing.assert_allclose(got[fin], want[fin], rtol=1e-5, atol=1e-5)


def _one_thread(kernel, args):
    out = [np.empty_like(args[1]), np.empty_like(args[1])]
    kernel(*args, *out, 0, kernels.NO_BOX, 0, 0)
    return out


@needs
@settings(max_examples=25, deadline=None)
@given(st.sampled_from([LSTM, GRU, RNN]), st.integers(1, 4), st.integers(120, 300),
       st.integers(1, 300), st.booleans())
def test_the_pair_step_equals_the_one_thread_step(cls, N, H, I, cell_state_given):
    """Any H (odd: halves of unequal size), I and N: the worker's half and the caller's
    are the one-thread step's numbers (the same dot products; bit for bit when both halves
    start on a multiple of eight rows)."""
    m = cls(I, H, seed=H)
    fam = m.family
    w_ih, w_hh, b_ih, b_hh = m.weights()[0][0][:4]
    kernel = kernels.pair_step_for(fam, np.float32, False, fam.num_gates * H * (I + H))
    if kernel is None:
        return
    rng = np.random.default_rng(N)
    x = rng.standard_normal((N, I)).astype(np.float32)
    h = rng.standard_normal((N, H)).astype(np.float32)
    c = rng.standard_normal((N, H)).astype(np.float32) if cell_state_given else h
    args = (x, h, c, w_ih, w_hh, b_ih, b_hh)
    want = _one_thread(kernel, args)
    exact = (H // 2) % 8 == 0
    for _ in range(3 if pair_step.served() else 40):
        got = [np.empty_like(h), np.empty_like(h)]
        assert pair_step.step(fam, kernel, *args, *got)
        for a, b in zip(got, want if fam.has_cell_state else want[:1]):
            if exact:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@needs
def test_never_when_asked_not_to():
    m = LSTM(256, 256).eval()
    x = np.ones((1, 256), np.float32)
    assert _served_while(lambda: m.step(x))
    time.sleep(0.01)                                      # the worker's spin has ended
    want = m.step(x)[0]
    for setting, frozen in ((1, m.freeze()), (None, m.freeze(threads=1))):
        kernels._state["threads"] = setting
        before = pair_step.served()
        for _ in range(50):
            np.testing.assert_allclose(frozen.step(x)[0], want, rtol=1e-5, atol=1e-6)
            if setting == 1:
                m.step(x)
        assert pair_step.served() == before
    assert all(s.pair_step is None for s in m.freeze(threads=1)._weights)
    assert all(s.pair_step is None for s in m.freeze(threads=3)._weights)
    rnnlab.set_num_threads(3)                             # numba's threads, not the pair
    assert not pair_step.on()
    g = GRU(256, 256).eval()
    assert all(s.pair_step is None and s.rows_step is not None for s in g.freeze()._weights)


@needs
def test_a_busy_pair_or_an_absent_worker_costs_no_result(monkeypatch):
    """Another thread holds the pair: the step runs on the other paths. The worker
    'spinning' but never taking its half (no core): the caller computes it; after
    PAIR_STEP_LOW such steps running the pair cools down."""
    m = GRU(256, 256, seed=2).eval()
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    kernels._state["threads"] = 1
    want = [m.step(x)[0] for _ in range(2)][0]
    kernels._state["threads"] = None
    with pair._state["lock"]:
        np.testing.assert_allclose(m.step(x)[0], want, rtol=1e-6, atol=1e-7)
    time.sleep(0.01)
    key = pair_step._key(m.family)
    monkeypatch.setattr(pair_step, "_wake", lambda *a: None)
    assert _left()
    pair_step.BOX[pair_step.B_STATE] = key                 # looks like it spins
    try:
        before = pair_step.served()
        for i in range(rnnlab.tuning.PAIR_STEP_LOW):
            assert pair._state["cool"] == 0.0
            np.testing.assert_allclose(m.step(x)[0], want, rtol=1e-6, atol=1e-7)
        assert pair._state["cool"] > time.monotonic() and pair_step.served() == before
        assert not pair_step.on() and pair_step._state["again"] == 1
    finally:
        pair_step.BOX[pair_step.B_STATE] = 0
    pair._state["cool"], pair_step._state["again"] = 0.0, 3     # the 4th time running:
    pair_step._state["empty"] = rnnlab.tuning.PAIR_STEP_LOW        # 8 x as long; spins
    t0 = time.monotonic()                                       # that met no step count
    np.testing.assert_allclose(m.step(x)[0], want, rtol=1e-6, atol=1e-7)
    assert pair._state["cool"] - t0 >= 8 * rnnlab.tuning.PAIR_STEP_COOL * 0.99


def _spinning_for(fam, kernel, monkeypatch):
    """Starts the worker spinning for ``fam`` with no time limit; returns its key."""
    monkeypatch.setattr(pair_step, "PAIR_STEP_SPIN", 30.0)
    key = pair_step._key(fam)
    pair_step._wake(kernel, key)
    t0 = time.monotonic()
    while pair_step.BOX[pair_step.B_STATE] != key:
        assert time.monotonic() - t0 < 5, "the worker never started spinning"
        time.sleep(0.001)
    return key


def _left(timeout=5.0):
    t0 = time.monotonic()
    while pair_step.BOX[pair_step.B_STATE] != 0:
        if time.monotonic() - t0 > timeout:
            return False
        time.sleep(0.001)
    return True


@needs
def test_a_spinning_worker_leaves_for_a_sequence_call_or_another_family(monkeypatch):
    torch, tm, om = torch_pair(LSTM, {}, 64, 256, 1, 0)
    kernel = kernels.pair_step_for(om.family, np.float32, False, 4 * 256 * 320)
    _spinning_for(om.family, kernel, monkeypatch)
    x = np.random.default_rng(0).standard_normal((20, 1, 64)).astype(np.float32)
    with rnnlab.no_grad():
        y, _ = om(x)                                        # the pair's sequence loop
    with torch.no_grad():
        np.testing.assert_allclose(y, tm(torch.from_numpy(x))[0].numpy(), rtol=1e-5,
                                   atol=1e-6)
    assert _left(), f"box {pair_step.BOX[:21].tolist()}, pair {pair._state}"
    _spinning_for(om.family, kernel, monkeypatch)
    g = GRU(256, 256).eval()
    monkeypatch.setattr(pair_step, "_wake", lambda *a: None)   # the budget stays 30 s
    pair._state["cool"] = 0.0                                  # (the sequence call's)
    assert pair_step.on()
    g.step(np.ones((1, 256), np.float32))                   # another family's step
    assert _left(), f"box {pair_step.BOX[:21].tolist()}, pair {pair._state}"


_FORK = """
import multiprocessing, numpy as np
""" + FORK_CHILD + """
from rnnlab import LSTM
from rnnlab.sequence import pair_step

def child(queue):
    queue.put((m.step(x)[0], m.freeze().step(x)[0]))

m = LSTM(256, 256, seed=0).eval()
x = np.ones((1, 256), np.float32)
if __name__ == "__main__":
    for _ in range(200):
        want = m.step(x)[0]                                 # the worker spins here
    assert pair_step.served() > 0
    got = run_child(child)
    for g in got:
        np.testing.assert_allclose(g, want, rtol=1e-6, atol=1e-7)
    print("ok")
"""


@needs
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_steps_with_its_own_worker(tmp_path):
    script_prints_ok(tmp_path, "fork_pair_step.py", _FORK)


@needs
def test_a_failing_spin_clears_its_wake(monkeypatch):
    def broken(*args):
        raise RuntimeError("no")
    pair_step._wake(broken, 99)
    t0 = time.monotonic()
    while pair_step.BOX[pair_step.B_WAKE] != 0:
        assert time.monotonic() - t0 < 5
        time.sleep(0.001)


@needs
def test_layers_of_both_kinds_step_under_one_hold_of_the_pair():
    """A 2-layer LSTM whose first layer is small (its one-thread row step) and second
    large (the pair's): one step runs both under one hold of the pair's lock
    (stepper.step_plan, pair_step.steps), unbatched and batched, and equals torch; an
    LSTM state whose h and c are one array is read as two."""
    torch, tm, om = torch_pair(LSTM, {}, 16, 128, 2, 3)
    om.step(np.zeros(16, np.float32))
    _, plan = om.__dict__["_step_weights"]
    assert [p is None for p, _, _ in plan.layers] == [True, False] and plan.pairs
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal(16).astype(np.float32)
    assert _served_while(lambda: om.step(x1))
    for N in (None, 1, 3):
        xs = rng.standard_normal((5, 1 if N is None else N, 16)).astype(np.float32)
        h0 = rng.standard_normal((2, xs.shape[1], 128)).astype(np.float32)
        with torch.no_grad():
            want, (th, tc) = tm(torch.from_numpy(xs), (torch.from_numpy(h0),) * 2)
        state = (h0[:, 0], h0[:, 0]) if N is None else (h0, h0)       # one array, twice
        ys = []
        for x in xs:
            y, state = om.step(x[0] if N is None else x, state)
            ys.append(y if N is not None else y[None])
        np.testing.assert_allclose(np.stack(ys), want.numpy(), rtol=1e-5, atol=1e-6)
        got_c = state[1] if N is not None else state[1][:, None]
        np.testing.assert_allclose(got_c, tc.numpy(), rtol=1e-5, atol=1e-6)


@needs
def test_the_worker_is_moved_off_the_callers_cpu_only_when_it_may_be_there(monkeypatch):
    """pair_step.steps asks where the caller runs (_keep_off, a system call) only when the
    worker is not spinning for this family or the last step was not served in time (the
    caller moved onto the worker's CPU shows so: its second half done by the caller)."""
    m = LSTM(256, 256, seed=1).eval()
    x = np.random.default_rng(0).standard_normal((1, 256)).astype(np.float32)
    assert _served_while(lambda: m.step(x))
    calls = []
    real = pair_step._keep_off
    monkeypatch.setattr(pair_step, "_keep_off", lambda: calls.append(1) or real())
    key = pair_step._key(m.family)
    for low, spinning, asked in ((0, True, False), (1, True, True), (0, False, True)):
        pair_step._state["low"] = low
        calls.clear()
        if spinning:
            assert _served_while(lambda: m.step(x))
            calls.clear()
            pair_step._state["low"] = low
        else:
            pair.STEP_BOX[pair_step.B_GEN] += 1               # the worker leaves
            assert _left()
        m.step(x)
        if spinning and not asked and pair_step.BOX[pair_step.B_STATE] != key:
            continue                                      # it left meanwhile (a hiccup)
        assert bool(calls) == asked, (low, spinning)


@needs
def test_a_batchs_halves_count_long_only_past_the_callers_own_time(monkeypatch):
    """pair_step.halves: a call whose caller waited for the worker's half 0.6x its own
    time counts in time (the two halves on one thread would have taken longer); 1.5x
    counts long (PAIR_WAIT_SHARE). The kernel here is a stand-in that takes the caller's
    time and reports the ticks it waited, as SEQUENCE_IN's role 1 does."""
    seen = []
    monkeypatch.setattr(pair_step, "_spinning", lambda *a: True)
    monkeypatch.setattr(pair_step, "_keep_off", lambda: None)
    monkeypatch.setattr(pair_step, "_key", lambda fam: 99)
    monkeypatch.setattr(pair_step, "_account", lambda spinning, waited, long: seen.append(
        long))
    rate = pair.rate()
    for own, wait in ((0.04, 0.024), (0.04, 0.06)):
        def kernel(*args, own=own, wait=wait):
            time.sleep(own + wait)
            return int(wait * rate) + 1
        assert pair_step.halves(None, kernel, ()) is True
    assert seen == [False, True]
