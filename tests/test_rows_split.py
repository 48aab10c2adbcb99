"""Unrecorded calls of 3 rows or more on the compiled loop, their rows in two halves
(halves.unrecorded_wanted): one compiled call, _loops.SEQUENCE_IN, projects the input
inside the loop; the caller runs rows 0:m and the pair's worker, spinning in the same
compiled function, claims rows m:N (pair_step.halves), no Python between them. The rows
of a batch never meet, so every result equals the one-thread call's to the bit, whoever
ran the second half: the worker, the caller when the worker did not come in time, or the
caller alone (another thread holds the pair, set_num_threads(1))."""
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnnlab
from rnnlab import GRU, LSTM, RNN
from rnnlab.cells import FAMILIES
from rnnlab.sequence import halves, kernels, pair, pair_step
from torch_pairs import (SPLIT_CASES, batch_inputs, equal_bits, one_thread, torch_pair,
                         until_the_worker_serves, worker_spinning)

needs_pair = pytest.mark.skipif(not (kernels.available() and pair.possible()),
                                reason="the pair runs on Linux x86-64, 2 CPUs, OpenBLAS")


@pytest.fixture
def split(monkeypatch):
    """The halves for any size (their thresholds are for speed only), directions one
    after the other, the worker spinning long after each call (so that it claims the next
    call's half); yields the list of what each call's pair_step.halves returned (True:
    the worker ran the second half)."""
    monkeypatch.setattr(halves, "HALVES_MIN", 0)
    monkeypatch.setattr(halves, "HALVES_STEP_MIN", 0)
    monkeypatch.setattr(pair, "DIRECTIONS_MIN", 1 << 62)
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 2.0)
    monkeypatch.setitem(kernels._state, "threads", None)
    pair._state.update(cool=0.0, low=0)
    ran, real = [], pair_step.halves

    def counted(*a):
        ran.append(real(*a))
        return ran[-1]
    monkeypatch.setattr(pair_step, "halves", counted)
    yield ran
    pair_step.BOX[pair_step.B_GEN] += 1                      # the worker stops spinning
    pair._state.update(cool=0.0, low=0)


@needs_pair
@pytest.mark.parametrize("cls, kw", SPLIT_CASES)
def test_layers_equal_torch_and_the_one_thread_path(cls, kw, split):
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
    assert len(split) == 2 * 2 * 2 * D     # 2 calls, each also one-thread; 2 layers


@needs_pair
def test_a_spinning_worker_runs_the_second_half():
    """The kernel itself: the worker spinning for this family's halves claims a posted
    request's second half while the caller runs the first (long: T = 400); the caller
    waits for it (role 1 returns the ticks waited + 1); the result is role 0's, bit for
    bit. Without a worker the caller claims the second half itself (returns 0)."""
    fam = FAMILIES["lstm"]
    kernel = kernels.kernel_for(fam, np.float32, 5, 32, 8, False, name="forward_in")
    rng = np.random.default_rng(0)
    f = np.float32
    x = rng.standard_normal((400, 5, 3)).astype(f)
    w_ih_t, w_hh_t = (rng.standard_normal((3, 32)).astype(f),
                      rng.standard_normal((8, 32)).astype(f) * f(0.3))
    bias, h0, c0 = rng.standard_normal(32).astype(f), np.zeros((5, 8), f), np.ones((5, 8), f)

    def call(role):
        out, c_n = np.full((400, 5, 8), np.nan, f), np.full((5, 8), np.nan, f)
        key = -pair_step._key(fam)
        r = kernel(x, w_ih_t, bias, w_hh_t, np.zeros(0, f), h0, c0, False, out, c_n, role,
                   pair_step.BOX, key if role else 0, 0)
        return r, out, c_n
    _, out0, c0_ = call(0)
    with pair._state["lock"]:
        pair_step.BOX[pair_step.B_GEN] += 1          # a worker spinning from before leaves
        assert worker_spinning(0)
        assert call(1)[0] == 0                        # no worker spinning: all here
        key = -pair_step._key(fam)
        pair_step._wake(kernel, key, pair_step._SEQ_DUMMIES, 30.0)
        try:
            assert worker_spinning(key), "the worker never started spinning"
            (waited, _, _), served = until_the_worker_serves(
                lambda: call(1), lambda r: equal_bits(r[1:], (out0, c0_)))
            assert waited > 0 and pair_step.served() == served + 1
        finally:
            pair_step.BOX[pair_step.B_GEN] += 1      # it leaves
        assert worker_spinning(0), "the worker kept spinning"


@needs_pair
def test_back_to_back_calls_meet_the_spinning_worker(split):
    """Many calls running: the worker, spinning after each, claims halves; each result is
    its own, whoever ran its half."""
    m = LSTM(4, 16, num_layers=2, dtype=np.float32, seed=0)
    xs = [np.random.default_rng(s).standard_normal((300, 6, 4)).astype(np.float32)
          for s in range(12)]
    want = [one_thread(m, x) for x in xs]
    for _ in range(5):               # (the worker's CPU may be taken a while: torch's
        with rnnlab.no_grad():       # OpenMP threads spin on after the tests before)
            for x, w in zip(xs, want):
                equal_bits(m(x), w)
        if any(split):
            break
        time.sleep(0.2)
    assert any(split), split


@needs_pair
def test_one_thread_when_another_thread_has_the_pair(split):
    m = GRU(4, 8, dtype=np.float32, seed=0)
    x = np.ones((6, 3, 4), np.float32)
    want = one_thread(m, x)
    served = pair_step.served()
    with pair._state["lock"], rnnlab.no_grad():
        got = m(x)
    equal_bits(got, want)
    assert split == [False, False] and pair_step.served() == served


@needs_pair
def test_only_calls_of_three_rows_or_more_on_the_compiled_loop(split):
    m = GRU(3, 8, dtype=np.float32, seed=0)
    x = np.ones((5, 3, 3), np.float32)
    with rnnlab.no_grad():
        m(x, lengths=[5, 3, 2])                            # lengths
        m(x[:, :2])                                        # two rows
        LSTM(3, 8, proj_size=4, dtype=np.float32, seed=0)(x)     # a projection
        GRU(3, 8, dtype=np.float64, seed=0)(x.astype(np.float64))      # float64
    m(x)                                                   # recorded (training)
    assert split == []
    one_thread(m, x)                                       # set_num_threads(1): both here
    with rnnlab.no_grad():
        m(x)
    assert len(split) == 2


def test_the_thresholds_are_by_shape(monkeypatch):
    fam = FAMILIES["gru"]
    if not (kernels.available() and pair.possible()):
        assert not halves.unrecorded_wanted(fam, np.float32, 100, 16, 384, 128, False)
        return
    monkeypatch.setattr(halves, "HALVES_MIN", 5 * 3 * 24 * 8)
    monkeypatch.setattr(halves, "HALVES_STEP_MIN", 3 * 24)
    assert halves.unrecorded_wanted(fam, np.float32, 5, 3, 24, 8, False)
    assert not halves.unrecorded_wanted(fam, np.float32, 4, 3, 24, 8, False)   # work
    assert not halves.unrecorded_wanted(fam, np.float32, 5, 3, 21, 7, False)   # per step
    assert not halves.unrecorded_wanted(fam, np.float32, 99, 2, 24, 8, False)  # 2 rows
    assert not halves.unrecorded_wanted(fam, np.float32, 5, 3, 24, 8, True)    # proj_size
    assert not halves.unrecorded_wanted(fam, np.float64, 5, 3, 24, 8, False)
    monkeypatch.setitem(kernels._state, "threads", 1)      # by shape, not by threads
    assert halves.unrecorded_wanted(fam, np.float32, 5, 3, 24, 8, False)


@needs_pair
def test_set_num_threads_1_runs_the_same_halves_here(split):
    m = LSTM(128, 16, dtype=np.float32, seed=0)
    x = np.random.default_rng(0).standard_normal((33, 5, 128)).astype(np.float32)
    with rnnlab.no_grad():
        got = m(x)
    served = pair_step.served()
    equal_bits(got, one_thread(m, x))
    assert len(split) == 2 and split[1] is False and pair_step.served() == served


@needs_pair
@pytest.mark.filterwarnings("error")
def test_overflow_in_the_halves_is_quiet_and_propagates_as_torch(split):
    torch, tm, m = torch_pair(LSTM, {}, 2, 8, 1)
    sd = m.state_dict()
    sd["weight_ih_l0"] = np.ones((32, 2), np.float32)      # x W_ih^T overflows in the
    sd["bias_ih_l0"] = np.full(32, 3e38, np.float32)       # loop's projection, + b too
    m.load_state_dict(sd)
    tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
    x = np.full((5, 4, 2), 3e38, np.float32)
    x[2, 3, 0] = -np.inf
    x[1, 0, 1] = np.nan
    got = m.eval()(x)
    equal_bits(got, one_thread(m, x))
    with torch.no_grad():
        want = tm(torch.from_numpy(x))
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-5, atol=1e-6)
    assert len(split) == 2


@needs_pair
@settings(max_examples=15, deadline=None)
@given(st.sampled_from([LSTM, GRU, RNN]), st.integers(1, 9), st.integers(3, 12),
       st.integers(1, 20), st.integers(1, 9), st.booleans(), st.booleans(), st.booleans())
def test_halves_equal_the_one_thread_path_and_torch(cls, T, N, H, I, bias, reverse, nan):
    old = halves.HALVES_MIN, halves.HALVES_STEP_MIN, kernels._state["threads"]
    halves.HALVES_MIN = halves.HALVES_STEP_MIN = 0
    kernels._state["threads"] = None
    try:
        if reverse:                                  # (torch has no such layer)
            m = cls(I, H, bias=bias, direction="reverse", dtype=np.float32, seed=T)
        else:
            torch, tm, m = torch_pair(cls, {"bias": bias}, I, H, 1, seed=T)
        x = np.random.default_rng(H).standard_normal((T, N, I)).astype(np.float32)
        if nan:
            x[T // 2, N - 1, I - 1] = np.nan
        with rnnlab.no_grad():
            got = m(x)
        equal_bits(got, one_thread(m, x))
        if not reverse:
            with torch.no_grad():
                want = tm(torch.from_numpy(x))
            np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-5, atol=1e-6)
    finally:
        halves.HALVES_MIN, halves.HALVES_STEP_MIN, kernels._state["threads"] = old


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


@pytest.mark.skipif(not kernels.available(), reason="numba not installed")
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("steps, reverse", [(0, False), (1, True), (2, False), (2, True)])
def test_the_projections_by_chunks_of_steps_give_the_step_by_step_bits(kind, steps, reverse):
    """SEQUENCE_IN projects the next C steps' rows at once (_loops_in.seq_in_steps: C =
    tuning.SEQ_IN_CHUNK bytes of them, so C depends on the rows a thread runs). T = 1, 2C
    (whole chunks for all 5 rows, role 0) and 2C + 3 (a short last chunk); role 1 with
    no worker runs rows 0:2 and 2:5 with their own C. Every row: the bits of SEQUENCE
    given the same projections made row by row in register tiles (the sums from the bias,
    in k order), forward and reverse."""
    from numba import njit

    from rnnlab.sequence._loops_in import seq_in_steps
    from rnnlab.sequence._tiles import product_from
    from rnnlab.tuning import SEQ_IN_CHUNK
    fam = FAMILIES[kind]
    f, G, H, I, N = np.float32, fam.num_gates, 64, 24, 5
    GH, FH = G * H, fam.fold * H
    C = SEQ_IN_CHUNK // (4 * N * GH)
    T = (1, 2 * C, 2 * C + 3)[steps]
    assert C >= 2 and T >= 1
    for R in (2, 3, 5):
        assert seq_in_steps(T, R, GH, I) == max(1, min(T, SEQ_IN_CHUNK // (4 * R * GH)))
    assert seq_in_steps(T, 5, GH, 100 * GH) == max(1, min(T, C // 100))    # a wide input
    rng = np.random.default_rng(3)
    x = rng.standard_normal((T, N, I)).astype(f)
    w_ih_t = rng.standard_normal((I, GH)).astype(f) * f(0.3)
    w_hh_t = rng.standard_normal((H, GH)).astype(f) * f(0.2)
    bias, b_rest = rng.standard_normal(GH).astype(f), rng.standard_normal(GH - FH).astype(f)
    h0, c0 = rng.standard_normal((N, H)).astype(f), rng.standard_normal((N, H)).astype(f)
    gx = np.empty((T * N, GH), f)
    njit(lambda c, d, a, b: product_from(c, d, a, b))(gx, np.tile(bias, (T * N, 1)),
                                                      x.reshape(T * N, I), w_ih_t)
    want_out, want_c = np.full((T, N, H), np.nan, f), np.full((N, H), np.nan, f)
    kernels.kernel_for(fam, f, N, GH, H, False)(
        gx.reshape(T, N, GH), w_hh_t, np.zeros(0, f), b_rest, h0, c0, reverse, want_out,
        want_c, False, np.zeros((T, N, fam.store * H), f), False, 0, N)
    forward_in = kernels.kernel_for(fam, f, N, GH, H, False, name="forward_in")
    roles = (0, 1) if pair.possible() else (0,)
    for role in roles:
        out, c_n = np.full((T, N, H), np.nan, f), np.full((N, H), np.nan, f)
        with pair._state["lock"]:
            pair_step.BOX[pair_step.B_GEN] += 1          # no worker spinning: all here
            got = forward_in(x, w_ih_t, bias, w_hh_t, b_rest, h0, c0, reverse, out, c_n,
                             role, pair_step.BOX, -pair_step._key(fam) if role else 0, 0)
        assert got == 0
        np.testing.assert_array_equal(out, want_out)
        if fam.has_cell_state:
            np.testing.assert_array_equal(c_n, want_c)
