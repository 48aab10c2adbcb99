"""Memory, measured with tracemalloc: inference keeps no record and runs at bounded
memory, construction peaks at the parameters' size, the scratch pool holds one call's
working set and gives it back, backward frees the record, training peaks at 4x the
parameters, and heads and gradient sums stay quiet on overflow."""
import tracemalloc
import warnings

import numpy as np
import pytest

import rnnlab
import rnnlab.sequence.pool as pool_module
from rnnlab import GRU, LSTM, GRUCell, LSTMCell
from rnnlab.nn import make_layer


def _kept_after(fn):
    """Bytes still allocated after fn() returns, less what fn returned."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    result = fn()
    arrays = result if isinstance(result, tuple) else (result,)
    returned = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    kept = tracemalloc.get_traced_memory()[0] - base - returned
    tracemalloc.stop()
    return kept


# -- inference keeps no record ----------------------------------------------------------
@pytest.mark.parametrize("how", ["eval", "no_grad"])
def test_inference_keeps_no_record(how):
    m = GRU(8, 64, num_layers=3)
    x = np.random.default_rng(0).standard_normal((200, 32, 8)).astype(np.float32)
    gx = 200 * 32 * 3 * 64 * 4                  # one layer's input projection, bytes
    m.train()
    kept_train = _kept_after(lambda: m(x))
    m._reset_records()
    if how == "eval":
        m.eval()
        kept = _kept_after(lambda: m(x))
    else:
        with rnnlab.no_grad():
            kept = _kept_after(lambda: m(x))
    assert m.last_call is None
    assert kept < 2 * gx < kept_train              # one layer's reusable scratch at most
    with pytest.raises(ValueError, match="not recorded"):
        m.backward(np.ones((200, 32, 64), np.float32))


def test_eval_backward_with_enable_grad():
    m = LSTM(3, 4, dtype=np.float64).eval()
    with rnnlab.enable_grad():
        out, _ = m(np.ones((2, 1, 3)))
    dx, dh, dc = m.backward(np.ones_like(out))
    assert dx.shape == (2, 1, 3)


# -- inference loops run at bounded memory ----------------------------------------------
def _cell_loop(cell, steps):
    h = c = np.zeros((1, 64), np.float32)
    x = np.ones((1, 64), np.float32)
    for _ in range(steps):
        h, c = cell(x, (h, c))
    return h


def test_eval_cell_loop_bounded():
    cell = LSTMCell(64, 64).eval()
    _cell_loop(cell, 100)
    kept = _kept_after(lambda: _cell_loop(cell, 10_000))
    assert kept < 1_000_000 and cell.pending == 0


@pytest.mark.slow
def test_eval_cell_loop_bounded_100k():
    cell = LSTMCell(64, 64).eval()
    _cell_loop(cell, 100)
    assert _kept_after(lambda: _cell_loop(cell, 100_000)) < 2_000_000


def test_eval_layer_step_bounded():
    m = GRU(16, 32, num_layers=2).eval()
    x = np.ones((1, 16), np.float32)

    def loop():
        state = None
        for _ in range(3000):
            y, state = m.step(x, state)
        return y
    loop()
    assert _kept_after(loop) < 500_000 and m._records.steps == []
    with pytest.raises(ValueError, match="no step left.*training mode"):
        m.step_backward(np.ones((1, 32), np.float32))


def test_training_cell_loop_records():
    cell = GRUCell(3, 4).train()
    for _ in range(3):
        cell(np.ones(3, np.float32))
    assert cell.pending == 3
    with rnnlab.no_grad():
        cell(np.ones(3, np.float32))
    assert cell.pending == 3


# -- construction peaks at the parameters' size -----------------------------------------
def test_constructor_peak_memory():
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    m = GRU(8, 1024)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    params = sum(p.nbytes for p in m.parameters())
    assert peak <= 1.5 * params and not m.grads          # gradients appear with backward


# -- the scratch pool: one call's working set, given back on request ------------------------
def _measured(fn):
    """(peak bytes above the start, bytes still held at the end) of fn()."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    fn()
    now, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - base, now - base


def test_inference_with_changing_lengths_holds_one_calls_scratch():
    """no_grad calls whose length changes every time keep about one call's working set,
    not one per length (the issue's case, scaled down: GRU(64, 256, 2 layers) at batch 32
    and lengths 400-439 held 400 MB for ~55 MB of scratch a call)."""
    m = GRU(16, 64, num_layers=2).eval()
    x = np.ones((140, 8, 16), np.float32)
    one_peak, _ = _measured(lambda: m(x[:139]))                # the longest call
    rnnlab.empty_cache()

    def calls():
        for T in range(100, 140):
            m(x[:T])
    _, held = _measured(calls)
    assert held <= 1.5 * one_peak, (held, one_peak)          # not one per length (40x)
    assert m._records.pool.bytes <= one_peak


def test_long_training_call_scratch_is_given_back():
    """A training call's record is freed by its backward; the pool then keeps at most that
    call's scratch until a shorter call, ``eval()`` or ``rnnlab.empty_cache()``."""
    m = GRU(8, 16)
    params = sum(p.nbytes for p in m.parameters())
    long = np.ones((5000, 2, 8), np.float32)

    def train_long():
        out, _ = m(long)
        m.backward(np.ones_like(out))
    peak, held = _measured(train_long)
    assert m.last_call is None and held <= 0.75 * peak     # the record is freed ...
    assert m._records.pool.bytes > 0                      # ... into the pool
    m.eval()
    assert m._records.pool.bytes == 0                     # eval() gives it back
    m.train()
    train_long()
    out, _ = m(long[:10])                                 # a short call trims the pool
    m.backward(np.ones_like(out))
    assert m._records.pool.bytes < 10 * 2 * 3 * 16 * 4 * 8
    train_long()
    rnnlab.empty_cache()
    assert m._records.pool.bytes == 0 and sum(g.nbytes for g in m.grads.values()) == params


def _training_memory(m, steps, zero=False):
    """(peak, held) of each training step of layer m, in parameter bytes (tracemalloc)."""
    params = sum(p.nbytes for p in m.parameters())
    x = np.ones((4, 1, 8), m.dtype)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0] - params     # the parameters count too
    out = []
    for _ in range(steps):
        if zero:
            m.zero_grad()
        tracemalloc.reset_peak()
        y, _ = m(x)
        m.backward(np.ones_like(y))
        now, peak = tracemalloc.get_traced_memory()
        out.append(((peak - base) / params, (now - base) / params))
    tracemalloc.stop()
    return out


def test_first_backward_peaks_at_three_times_the_parameters():
    """The measured rule the README states: training peaks at 3x the parameter bytes
    during the first backward (parameters, the forward's copies of the weights, the
    gradients) and between calls holds the parameters, their gradients and, in the
    module's pool, the weight copies (3x; rnnlab.empty_cache() gives them back: 2x)."""
    m = GRU(8, 600, dtype=np.float64)
    [(peak, held)] = _training_memory(m, 1)
    assert 2.8 <= peak <= 3.3 and 2.8 <= held <= 3.1, (peak, held)
    params = sum(p.nbytes for p in m.parameters())
    rnnlab.empty_cache()
    assert m._records.pool.bytes == 0 and sum(g.nbytes for g in m.grads.values()) == params
    for peak, held in _training_memory(m, 3, zero=True):   # zero_grad(): 3x, every step
        assert peak <= 3.3 and held <= 3.1, (peak, held)


def test_accumulating_gradients_holds_one_steps_buffers(monkeypatch):
    """Steps without zero_grad add backward's dW_ih / dW_hh into the gradients; those
    buffers stay in the pool with the weight copies (4x, the step's own peak, not growing
    from step to step); weight buffers above tuning.POOL_WEIGHTS_MAX are fresh each call
    (here: all of them; so are those under tuning.POOL_WEIGHTS_MIN), and the layer holds
    2x. The gradients add up exactly either way,
    and no gradient shares memory with a free buffer of the pool."""
    for limit in (1 << 26, 0):
        monkeypatch.setattr(pool_module, "POOL_WEIGHTS_MAX", limit)
        m = GRU(8, 600, dtype=np.float64)
        for peak, held in _training_memory(m, 4)[1:]:
            assert peak <= 4.3 and held <= (4.1 if limit else 2.1), (limit, peak, held)
        m.zero_grad()
        _training_memory(m, 1)
        one = {k: g.copy() for k, g in m.grads.items()}
        _training_memory(m, 1)                                  # g + g: exactly 2 g
        for k, g in m.grads.items():
            np.testing.assert_array_equal(g, 2 * one[k], err_msg=k)
        free = [b for stack in m._records.pool._free.values() for b in stack]
        assert not any(np.shares_memory(g, b) for g in m.grads.values() for b in free)


def test_compiled_training_peaks_stay_where_the_first_step_put_them():
    """A float32 layer on the compiled loops: its record keeps one copy of W_hh (BPTT's
    loop reads it as it is), so the first backward peaks under 3.3x (the scratch of a
    small layer weighs more beside its weights than a large one's), every step after it
    with zero_grad() too, and accumulating steps under 4.3x. Its 1 MB W_hh pools (from
    tuning.POOL_WEIGHTS_MIN); the forward-only W_hh^T of the compiled loop is leased in
    a buffer of W_hh's shape, which the W_hh snapshot or dW_hh then takes (a buffer of
    its own, beside the pool's free ones, made these 4.05x / 4.98x)."""
    LSTM(8, 16, dtype=np.float32)(np.ones((2, 1, 8), np.float32))   # kernels loaded
    m = LSTM(8, 256, dtype=np.float32)
    assert m.weight_hh_l0.nbytes >= pool_module.POOL_WEIGHTS_MIN
    for peak, held in _training_memory(m, 4, zero=True):
        assert peak <= 3.3 and held <= 3.2, (peak, held)
    for peak, held in _training_memory(m, 4):                   # accumulating
        assert peak <= 4.3 and held <= 4.2, (peak, held)


def test_heads_and_gradient_sums_are_quiet_and_torchs():
    """Linear on inf input, Embedding's backward with 3e38 gradients and gradient sums
    past float32's range: no warning, and torch's values (inf / NaN where torch's are)."""
    torch = pytest.importorskip("torch")
    lin = rnnlab.Linear(3, 2)
    tl = torch.nn.Linear(3, 2)
    tl.load_state_dict({k: torch.from_numpy(v) for k, v in lin.state_dict().items()})
    x = np.array([[np.inf, 1.0, -1.0], [3e38, 3e38, 3e38]], np.float32)
    emb = rnnlab.Embedding(4, 3)
    te = torch.nn.Embedding(4, 3)
    te.load_state_dict({"weight": torch.from_numpy(emb.weight.copy())})
    idx = np.array([1, 1, 1])
    d = np.full((3, 3), 3e38, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = lin(x)
        lin.backward(np.full((2, 2), 3e38, np.float32), retain_graph=True)
        lin.backward(np.full((2, 2), 3e38, np.float32))           # the sum overflows
        emb(idx)
        emb.backward(d)
    ty = tl(torch.from_numpy(x))
    ref = ty.detach().numpy()
    fin = np.isfinite(ref)                          # inf / NaN at the same places
    np.testing.assert_array_equal(y[~fin], ref[~fin])
    # 3e38 inputs cancel to ~1e35: float32's rounding is relative to the terms, not the sum
    # (random weights: a fixed rtol on the sum failed 7 times in 300 inits)
    terms = np.abs(x.astype(np.float64)) @ np.abs(lin.weight.T.astype(np.float64))
    assert np.all(np.abs(y[fin] - ref[fin]) <= 1e-6 * (terms[fin] + np.abs(lin.bias).max()))
    ty.backward(torch.full((2, 2), 3e38))
    ty = tl(torch.from_numpy(x))
    ty.backward(torch.full((2, 2), 3e38))
    for name, p in tl.named_parameters():
        np.testing.assert_allclose(lin.grads[name], p.grad.numpy(), rtol=1e-6, err_msg=name)
    te(torch.from_numpy(idx)).backward(torch.from_numpy(d))
    np.testing.assert_allclose(emb.grads["weight"], te.weight.grad.numpy(), rtol=1e-6)


@pytest.mark.parametrize("mode,zero", [("lstm", False), ("gru", False), ("lstm", True)])
def test_repeated_training_steps_take_every_buffer_from_the_pool(mode, zero, monkeypatch):
    """From the second training step on, every buffer the forward and backward lease
    (scratch, weight copies, dW temporaries) comes from the pool: the backward's scratch
    was dropped by the forward's release and made afresh every call (page faults: a
    fresh 4 MB array costs ~1 ms here), and the weight copies were not pooled at all.
    With zero_grad() before each step, the dropped gradients serve as the next dW. (Weight
    buffers pool from tuning.POOL_WEIGHTS_MIN bytes, 64 KiB: here from 0.)"""
    monkeypatch.setattr(pool_module, "POOL_WEIGHTS_MIN", 0)
    m = make_layer(mode, 8, 32, num_layers=2, bidirectional=True, dtype=np.float32)
    x = np.ones((30, 16, 8), np.float32)
    pool = m._records.pool
    missed, get = [], pool._get

    def counting(key):
        arr = get(key)
        if arr is None:
            missed.append(key)
        return arr
    pool._get = counting
    for step in range(3):
        if zero:
            m.zero_grad()
        missed.clear()
        y, _ = m(x)
        m.backward(np.ones_like(y))
    assert missed == [], missed


def test_zero_grad_never_reuses_a_gradient_someone_holds(monkeypatch):
    """zero_grad() hands a dropped gradient to the pool only when nothing else refers to
    it: one the caller kept (or a view of it) keeps its values through later steps."""
    monkeypatch.setattr(pool_module, "POOL_WEIGHTS_MIN", 0)
    m = LSTM(8, 32, dtype=np.float32)
    x = np.ones((5, 3, 8), np.float32)

    def step(scale):
        y, _ = m(scale * x)
        m.backward(np.ones_like(y))
    step(1.0)
    held = m.grads["weight_hh_l0"]
    view = m.grads["weight_ih_l0"][:4]
    copies = held.copy(), view.copy()
    for scale in (2.0, 3.0):
        m.zero_grad()
        step(scale)
    np.testing.assert_array_equal(held, copies[0])
    np.testing.assert_array_equal(view, copies[1])
    assert not np.shares_memory(held, m.grads["weight_hh_l0"])
    assert not np.shares_memory(view, m.grads["weight_ih_l0"])


def test_zero_grad_of_a_module_without_pooled_gradients_piles_nothing_up():
    """A Linear head's backward makes its gradients afresh, so its zero_grad() hands
    nothing to its pool (which no call of it would trim: 64 dropped gradients per shape
    would pile up there)."""
    head = rnnlab.Linear(256, 4096)                      # 4 MiB of weight gradient
    x = np.ones((8, 256), np.float32)
    for _ in range(4):
        head.zero_grad()
        head(x)
        head.backward(np.ones((8, 4096), np.float32))
    assert head._records.pool.bytes == 0
