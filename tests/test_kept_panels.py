"""Weights in panels kept between unrecorded calls (linalg.kept_panels_of, kept_halves;
_kept.kept_panels): each call compares the weight's rows with the bits its panels were
packed from and packs them again when any differs, so whatever changes a weight in place
between calls (an edit, an optimizer's step, load_state_dict) is read at the next call,
on every path that keeps them: the compiled loop on one thread (driver), a batch's rows
in halves (halves.forward), batch 1 on the pair (pair_step.pair_in; a batch on the
pair: tests/test_pair.py)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import GRU, LSTM
from rnnlab.sequence import driver, halves, kernels, linalg, pair, pair_step, pool
from rnnlab.train.optim import SGD
from torch_pairs import equal_bits, in_threads, one_thread, torch_pair

needs_pair = pytest.mark.skipif(not (kernels.available() and pair.possible()),
                                reason="the pair runs on Linux x86-64, 2 CPUs, OpenBLAS")
needs_kernels = pytest.mark.skipif(not kernels.available(), reason="needs numba")


def _synced(torch, tm, om):
    """torch's layer given rnnlab's parameters as they are now."""
    with torch.no_grad():
        for name, p in tm.named_parameters():
            p.copy_(torch.from_numpy(np.asarray(getattr(om, name), np.float32)))
    return tm


def _equal_torch(torch, tm, om, x):
    with rnnlab.no_grad():
        y, _ = om(x)
    with torch.no_grad():
        ty, _ = _synced(torch, tm, om)(torch.from_numpy(x))
    np.testing.assert_allclose(y, ty.numpy(), rtol=1e-5, atol=1e-6)
    return y


@pytest.fixture
def kept_calls(monkeypatch):
    """Counts the calls of linalg.kept_panels_of by the driver and by halves.forward."""
    calls = []
    for module in (driver, halves):
        real = module.kept_panels_of
        monkeypatch.setattr(module, "kept_panels_of",
                            lambda *a, real=real, where=module.__name__: calls.append(where)
                            or real(*a))
    return calls


@needs_kernels
@pytest.mark.parametrize("cls", [LSTM, GRU])
@pytest.mark.parametrize("path", ["one thread", "halves"])
def test_edits_between_calls_are_read(cls, path, kept_calls, monkeypatch):
    """Two layers, unrecorded calls with in-place edits between them (NaN into one
    element of W_hh, then of W_ih, each back to a finite value, W_hh of layer 1 halved,
    an SGD step of a training call, load_state_dict): torch's numbers after every one;
    the panels were kept (pool.KEPT holds them) and read on the path asked for."""
    if path == "halves":
        monkeypatch.setattr(halves, "HALVES_MIN", 0)
        monkeypatch.setattr(halves, "HALVES_STEP_MIN", 0)
        monkeypatch.setitem(kernels._state, "threads", None)
        N = 5
    else:
        monkeypatch.setitem(kernels._state, "threads", 1)
        N = 2
    torch, tm, om = torch_pair(cls, {}, 5, 40, 2)
    x = np.random.default_rng(0).standard_normal((20, N, 5)).astype(np.float32)
    pool.KEPT.clear()
    _equal_torch(torch, tm, om, x)
    om.weight_hh_l0[17, 3] = np.nan                    # one element, in a middle row
    assert np.isnan(_equal_torch(torch, tm, om, x)).any()
    om.weight_hh_l0[17, 3] = 0.25
    om.weight_ih_l0[3, 2] = np.nan
    assert np.isnan(_equal_torch(torch, tm, om, x)).all()
    om.weight_ih_l0[3, 2] = 0.25
    om.weight_hh_l1[...] *= 0.5
    before = _equal_torch(torch, tm, om, x)
    om.train()
    opt = SGD([om], lr=0.5)
    y, _ = om(x)
    om.backward(np.ones_like(y))
    opt.step()
    om.eval()
    after = _equal_torch(torch, tm, om, x)
    assert not np.array_equal(before, after)
    om.load_state_dict({k: v.detach().numpy() * 0.9 for k, v in tm.state_dict().items()})
    _equal_torch(torch, tm, om, x)
    want = {"one thread": "rnnlab.sequence.driver", "halves": "rnnlab.sequence.halves"}[path]
    assert kept_calls and set(kept_calls) == {want}
    assert pool.KEPT
    rnnlab.empty_cache()
    assert not pool.KEPT


@needs_kernels
def test_each_thread_keeps_its_own(monkeypatch):
    """Calls of one module from several threads at once: each thread keeps its own
    panels (no thread reads panels another is packing); every result is the one-thread
    result, bit for bit, also when the weights change between rounds."""
    monkeypatch.setitem(kernels._state, "threads", 1)
    m = GRU(6, 48, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(1).standard_normal((30, 2, 6)).astype(np.float32)
    pool.KEPT.clear()
    for _ in range(3):
        want = one_thread(m, x)
        got = [None] * 4

        def run(i):
            with rnnlab.no_grad():
                for _ in range(5):
                    got[i] = m(x)
        assert not in_threads(run, 4)
        for g in got:
            equal_bits(g, want)
        m.weight_hh_l0[...] *= 0.75
    tags = {tag for _, tag in pool.KEPT}
    assert len(tags) >= 2                               # the main thread's and others'


@needs_kernels
def test_a_finished_threads_panels_go_with_it(monkeypatch):
    """A thread's own panels (kept_panels_of) are not kept for it after it has ended: the
    next thread that makes its own drops those of threads gone (a server starting a
    thread a request would otherwise pile up 2x the weights a thread)."""
    import threading
    monkeypatch.setitem(kernels._state, "threads", 1)
    m = GRU(6, 48, dtype=np.float32, seed=0).eval()
    x = np.random.default_rng(1).standard_normal((30, 2, 6)).astype(np.float32)
    want = one_thread(m, x)
    pool.KEPT.clear()
    got = []

    def call():
        with rnnlab.no_grad():
            got.append(m(x))
    for _ in range(3):
        t = threading.Thread(target=call)
        t.start()
        t.join()
        assert {tag for _, tag in pool.KEPT} == {t.ident}
    call()
    assert {tag for _, tag in pool.KEPT} == {threading.get_ident()}
    for g in got:
        equal_bits(g, want)


@needs_pair
def test_batch_one_keeps_w_ih_halves_and_reads_edits(small, monkeypatch):
    """Batch 1 on the pair (the step box): W_ih's halves kept (tag "halves"), torch's
    numbers after edits in place, the kept panels dropped with the weight itself."""
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 2.0)
    torch, tm, om = torch_pair(LSTM, {}, 5, 30, 1)
    x = np.random.default_rng(2).standard_normal((40, 1, 5)).astype(np.float32)
    pool.KEPT.clear()
    try:
        for edit in range(4):
            _equal_torch(torch, tm, om, x)
            om.weight_ih_l0[edit * 7 % 120, edit % 5] *= -3
        assert {tag for _, tag in pool.KEPT} == {"halves"} and all(small)
        om.weight_ih_l0 = om.weight_ih_l0.copy()          # a new array: a new entry, and
        _equal_torch(torch, tm, om, x)                    # the old one's dropped with it
        assert len(pool.KEPT) == 1
    finally:
        pair_step.BOX[pair_step.B_GEN] += 1


@needs_pair
@pytest.mark.parametrize("cls", [LSTM, GRU])
def test_batch_one_reads_edits_found_among_the_multiply_adds(cls, small, monkeypatch):
    """Batch 1 on the pair at a size whose projection compares W_ih with its bits among
    the tiles' multiply-adds once a compare has found nothing changed (_kept.check_plan,
    the head of each half's buffer 0): an edit in place of one element of W_ih, in the
    first or last row, of either half, or NaN, is read by the next call (torch's
    numbers), and that call's compare found it (the half's head 1 again)."""
    from rnnlab.sequence._kept import check_plan
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 2.0)
    torch, tm, om = torch_pair(cls, {}, 64, 64, 1)
    G, T = om.weight_ih_l0.shape[0] // 64, 40
    assert all(check_plan(T, 64, G, hi - lo)[0] for lo, hi in linalg.both_halves(64))
    x = np.random.default_rng(4).standard_normal((T, 1, 64)).astype(np.float32)
    pool.KEPT.clear()
    try:
        for row, col, value in [(0, 0, 0.5), (G * 64 - 1, 63, -0.5), (31, 7, np.nan),
                                (31, 7, 0.25), (32, 40, 2.0), (G * 64 - 33, 1, 0.0)]:
            _equal_torch(torch, tm, om, x)
            _equal_torch(torch, tm, om, x)
            bufs = [b for (_, tag), (_, b) in pool.KEPT.items() if tag == "halves"][0]
            assert [int(b[0, :1].view(np.int32)[0]) for b in bufs] == [0, 0]
            om.weight_ih_l0[row, col] = value
            y = _equal_torch(torch, tm, om, x)
            assert np.isnan(y).any() == np.isnan(value)
            half = int(row % 64 >= 32)
            assert int(bufs[half][0, :1].view(np.int32)[0]) == 1
            assert int(bufs[1 - half][0, :1].view(np.int32)[0]) == 0
        assert all(small)
    finally:
        pair_step.BOX[pair_step.B_GEN] += 1


@needs_pair
@pytest.mark.parametrize("N, path", [(2, "one thread"), (5, "halves"), (1, "batch 1"),
                                     (6, "pair's batch")])
def test_weights_too_large_to_keep_are_packed_every_call(N, path, small, monkeypatch):
    """Weights of more than POOL_WEIGHTS_MAX bytes (here any) are not kept (a huge layer
    would hold 3x its parameters between calls): nothing in pool.KEPT, each call packs
    them, torch's numbers after an edit in place, on every path that keeps them."""
    monkeypatch.setattr(linalg, "POOL_WEIGHTS_MAX", 0)
    monkeypatch.setattr(pair_step, "PAIR_SPIN", 2.0)
    if path == "halves":
        monkeypatch.setattr(halves, "HALVES_MIN", 0)
        monkeypatch.setattr(halves, "HALVES_STEP_MIN", 0)
    if path == "pair's batch":
        monkeypatch.setattr(linalg, "PAIR_GEMM_MIN", 0)
        monkeypatch.setattr(kernels, "TILE_ROW_WEIGHTS", 0)
    if path == "one thread":
        monkeypatch.setitem(kernels._state, "threads", 1)
    torch, tm, om = torch_pair(LSTM, {}, 5, 40, 2)
    x = np.random.default_rng(3).standard_normal((20, N, 5)).astype(np.float32)
    pool.KEPT.clear()
    try:
        _equal_torch(torch, tm, om, x)
        om.weight_hh_l0[17, 3] = 0.5
        om.weight_ih_l1[11, 2] = -0.5
        _equal_torch(torch, tm, om, x)
    finally:
        pair_step.BOX[pair_step.B_GEN] += 1
    assert not pool.KEPT
