"""Property-based fuzzing of everything that takes user input (hypothesis).

Valid input: equal to torch (float64), NaN/inf exactly where torch has them. Invalid
input: ValueError or TypeError with a message, never another exception, never a warning,
and the module unchanged. CI runs a bounded number of examples; ``pytest -m slow`` runs
the long profile (HYPOTHESIS_PROFILE=fuzz for more).
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnlab
from rnnlab import functional as F
from rnnlab.nn import make_cell, make_layer

torch = pytest.importorskip("torch")

from fuzz_helpers import JUNK, cli_exits_cleanly, only_clear_errors, snapshot, unchanged  # noqa: E402,E501

# profiles ("ci": the same examples every run; "fuzz": random, 2000 each): tests/conftest.py

SPECIAL = [np.nan, np.inf, -np.inf, 1e30, -1e30, 5e-324, -2.2e-308, 0.0]
KINDS = ["rnn", "rnn_relu", "gru", "lstm"]


@st.composite
def values(draw, shape, special=True):
    """Random normal values with some special values sprinkled in."""
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(shape)
    if special and a.size and draw(st.booleans()):
        k = draw(st.integers(1, min(3, a.size)))
        idx = rng.choice(a.size, size=k, replace=False)
        a.reshape(-1)[idx] = [draw(st.sampled_from(SPECIAL)) for _ in range(k)]
    return a


@st.composite
def layer_cases(draw):
    kind = draw(st.sampled_from(KINDS))
    H = draw(st.integers(1, 5))
    cfg = dict(kind=kind, I=draw(st.integers(1, 4)), H=H, L=draw(st.integers(1, 3)),
               bi=draw(st.booleans()), bf=draw(st.booleans()), bias=draw(st.booleans()),
               proj=draw(st.integers(0, H - 1)) if kind == "lstm" and H > 1 else 0,
               T=draw(st.integers(1, 5)), N=draw(st.integers(0, 3)),
               unbatched=draw(st.booleans()), seed=draw(st.integers(0, 1000)))
    if cfg["unbatched"]:
        cfg["N"] = 1
    cfg["lengths"] = None
    if not cfg["unbatched"] and cfg["N"] > 0 and draw(st.booleans()):
        lens = [draw(st.integers(1, cfg["T"])) for _ in range(cfg["N"])]
        lens[draw(st.integers(0, cfg["N"] - 1))] = cfg["T"]
        cfg["lengths"] = lens
    cfg["dtype"] = draw(st.sampled_from(["float64", "float64", "float32"]))
    cfg["special"] = draw(st.sampled_from(["none", "x", "h0", "weight"])) \
        if cfg["dtype"] == "float64" else "none"
    cfg["state"] = draw(st.booleans())
    cfg["grads"] = draw(st.sampled_from(["all", "output", "h_n", "c_n"]))
    return cfg


def _pair(cfg):
    fam = rnnlab.cells.by_kind(cfg["kind"])
    kw = dict(num_layers=cfg["L"], bias=cfg["bias"], batch_first=cfg["bf"],
              bidirectional=cfg["bi"])
    if cfg["proj"]:
        kw["proj_size"] = cfg["proj"]
    torch.manual_seed(cfg["seed"])
    tm = getattr(torch.nn, fam.torch_class)(cfg["I"], cfg["H"], **kw, **fam.options).to(
        getattr(torch, cfg.get("dtype", "float64")))
    om = make_layer(cfg["kind"], cfg["I"], cfg["H"], **kw, dtype=cfg.get("dtype", "float64"))
    om.load_state_dict(tm.state_dict())
    return fam, tm, om


def _close(ours, theirs, what):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else np.asarray(theirs)
    if theirs.dtype == np.float32:                 # float32: TOL's relative measure
        from rnnlab.tools.cases import TOL, error
        assert error(ours, theirs, "float32") <= TOL["float32"], what
        return
    ours = np.asarray(ours, dtype=np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} vs torch {theirs.shape}"
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs), err_msg=f"{what} NaN")
    np.testing.assert_array_equal(np.isinf(ours), np.isinf(theirs), err_msg=f"{what} inf")
    fin = np.isfinite(theirs)
    np.testing.assert_allclose(ours[fin], theirs[fin], rtol=1e-8, atol=1e-9, err_msg=what)


@given(layer_cases(), st.data())
def test_layers_equal_torch(cfg, data):
    fam, tm, om = _pair(cfg)
    D = 2 if cfg["bi"] else 1
    T, N, I, H, L = cfg["T"], cfg["N"], cfg["I"], cfg["H"], cfg["L"]
    H_out = cfg["proj"] or H
    xs = (T, I) if cfg["unbatched"] else ((N, T, I) if cfg["bf"] else (T, N, I))
    hs = (L * D, H_out) if cfg["unbatched"] else (L * D, N, H_out)
    cs = (L * D, H) if cfg["unbatched"] else (L * D, N, H)
    sp = cfg["special"]
    dt = cfg["dtype"]
    x = data.draw(values(xs, sp == "x")).astype(dt)
    h0 = data.draw(values(hs, sp == "h0")).astype(dt) if cfg["state"] else None
    c0 = data.draw(values(cs, False)).astype(dt) if cfg["state"] and fam.has_cell_state else None
    if sp == "weight":
        name = data.draw(st.sampled_from(sorted(om.state_dict())))
        w = getattr(om, name)
        if w.size:
            w.reshape(-1)[0] = data.draw(st.sampled_from(SPECIAL))
            with torch.no_grad():
                getattr(tm, name).copy_(torch.from_numpy(w))
    hx = (h0, c0) if fam.has_cell_state and cfg["state"] else h0
    tx = torch.tensor(x, requires_grad=True)
    th0 = None if h0 is None else torch.tensor(h0, requires_grad=True)
    thx = (th0, torch.tensor(c0)) if fam.has_cell_state and cfg["state"] else th0
    if cfg["lengths"] is not None:
        from rnnlab.tools.conformance import torch_forward
        tout, ts = torch_forward(tm, tx, thx, cfg["lengths"], cfg["bf"])
    else:
        tout, ts = tm(tx, thx)
    th_n, tc_n = ts if fam.has_cell_state else (ts, None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, state = om(x, hx, lengths=cfg["lengths"])
    h_n, c_n = state if fam.has_cell_state else (state, None)
    _close(out, tout, "output")
    _close(h_n, th_n, "h_n")
    if c_n is not None:
        _close(c_n, tc_n, "c_n")
    which = cfg["grads"] if cfg["grads"] != "c_n" or c_n is not None else "all"
    dy = data.draw(values(tuple(tout.shape), False)).astype(dt)
    dh = data.draw(values(tuple(th_n.shape), False)).astype(dt)
    dc = None if c_n is None else data.draw(values(tuple(tc_n.shape), False)).astype(dt)
    d = {"all": (dy, dh, dc), "output": (dy, None, None), "h_n": (None, dh, None),
         "c_n": (None, None, dc)}[which]
    loss = 0
    for t_val, g in zip((tout, th_n, tc_n), d):
        if g is not None:
            loss = loss + (t_val * torch.tensor(g)).sum()
    if not torch.is_tensor(loss) or not loss.requires_grad:
        return
    loss.backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        g = om.backward(*d) if fam.has_cell_state else om.backward(d[0], d[1])
    _close(g[0], tx.grad, "dx")
    if th0 is not None:
        _close(g[1], th0.grad if th0.grad is not None else torch.zeros_like(th0), "dh0")
    for name, p in tm.named_parameters():
        want = p.grad if p.grad is not None else torch.zeros_like(p)
        _close(om.grads.get(name, np.zeros(p.shape)), want, "d" + name)


# -- invalid input: only ValueError / TypeError, nothing changed -------------------------
@given(st.sampled_from(KINDS), JUNK, JUNK, JUNK, JUNK)
def test_layer_bad_input(kind, x, hx, lengths, masks):
    m = make_layer(kind, 3, 4, num_layers=2, dtype=np.float64)
    out, _ = m(np.ones((2, 1, 3)))
    snap = snapshot(m)
    if not only_clear_errors(lambda: m(x, hx, lengths=lengths, dropout_masks=masks)):
        unchanged(m, snap)


@given(st.sampled_from(KINDS), JUNK, JUNK, JUNK)
def test_layer_bad_gradients(kind, d_out, d_h, d_c):
    m = make_layer(kind, 3, 4, num_layers=2, dtype=np.float64)
    m(np.ones((2, 1, 3)))
    snap = snapshot(m)
    lstm = m.family.has_cell_state
    ok = only_clear_errors(lambda: m.backward(d_out, d_h, d_c) if lstm else m.backward(d_out, d_h))
    if not ok:
        unchanged(m, snap)


@given(st.sampled_from(KINDS), JUNK, JUNK, JUNK)
def test_cell_and_step_bad_input(kind, x, h, g):
    cell = make_cell(kind, 3, 4, dtype=np.float64)
    cell(np.ones(3))
    snap = snapshot(cell)
    if not only_clear_errors(lambda: cell(x, h)):
        unchanged(cell, snap)
    snap = snapshot(cell)
    if not only_clear_errors(lambda: cell.backward(g)):
        unchanged(cell, snap)
    layer = make_layer(kind, 3, 4, num_layers=2, dtype=np.float64)
    layer.step(np.ones(3))
    n_steps = len(layer._records.steps)
    if not only_clear_errors(lambda: layer.step(x, h)):
        assert len(layer._records.steps) == n_steps
    n_steps = len(layer._records.steps)
    if not only_clear_errors(lambda: layer.step_backward(g, h)):
        assert len(layer._records.steps) == n_steps
    only_clear_errors(lambda: rnnlab.backprop_cells(cell, g, h))


@given(st.sampled_from(["GRU", "LSTM", "RNN_TANH", "X", None]), JUNK, JUNK, JUNK, JUNK)
def test_functional_bad_input(mode, x, h0, lengths, masks):
    w = make_layer("gru", 3, 4, dtype=np.float64).weights()
    only_clear_errors(lambda: F.forward(mode, x, w, h0, lengths=lengths, masks=masks))
    only_clear_errors(lambda: F.forward("GRU", np.ones((2, 1, 3)), x))
    (_, _, _), cache = F.forward("GRU", np.ones((2, 1, 3)), w)
    only_clear_errors(lambda: F.backward(cache, x, h0))


@given(st.lists(st.integers(-1, 4), min_size=0, max_size=5), JUNK,
       st.lists(st.integers(-1, 4), max_size=5), st.integers(0, 3))
def test_from_packed_fuzz(sizes, data, idx, feat):
    from rnnlab.sequence import PackedSequence
    rows = max(0, sum(sizes))
    for d in (data, np.arange(rows * feat, dtype=float).reshape(rows, feat)):
        packed = PackedSequence(d, np.array(sizes, dtype=np.int64),
                                np.array(idx, dtype=np.int64) if idx else None, None)
        if only_clear_errors(lambda: rnnlab.from_packed(packed)) and sizes and \
                isinstance(d, np.ndarray) and d.dtype.kind == "f" and d.ndim == 2:
            t = torch.nn.utils.rnn.PackedSequence(
                torch.from_numpy(d), torch.tensor(sizes),
                torch.tensor(idx) if idx else None,
                torch.tensor(np.argsort(idx)) if idx else None)
            want, lens = torch.nn.utils.rnn.pad_packed_sequence(t)
            got, our_lens = rnnlab.from_packed(packed)
            np.testing.assert_array_equal(got, want.numpy())
            np.testing.assert_array_equal(our_lens, lens.numpy())


@given(st.dictionaries(st.sampled_from(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                        "bias_hh_l0", "junk", 3]), JUNK, max_size=5),
       st.booleans())
def test_state_dict_fuzz(sd, strict):
    m = make_layer("gru", 3, 4, dtype=np.float64)
    snap = snapshot(m)
    if not only_clear_errors(lambda: m.load_state_dict(sd, strict=strict)):
        unchanged(m, snap)


ARGS = ["explain", "verify", "gradcheck", "bench", "rnn", "gru", "lstm", "mgu", "--layers",
        "0", "2", "-1", "x", "--hidden-size", "--proj-size", "1", "3", "--lengths", "3,1",
        "0,2", "a", "--seq-len", "--batch", "--bidirectional", "--dtype", "float16",
        "--nonlinearity", "relu", "--samples", "--sizes", "1,1,1,1", "--kinds", "--reps",
        "--no-torch", "--quick", "--full", "--help", "--version", ""]


@settings(max_examples=25)
@given(st.lists(st.sampled_from(ARGS), max_size=6))
def test_cli_fuzz(argv):
    if "verify" in argv or "bench" in argv and "--no-torch" not in argv:
        argv = [a for a in argv if a not in ("verify", "bench")]   # slow, covered elsewhere
    if "--full" in argv or ("gradcheck" in argv and "--samples" not in argv):
        argv = [a for a in argv if a != "gradcheck"]
    cli_exits_cleanly(argv)


@pytest.mark.slow
def test_long_fuzz_profile():
    """The same properties with many more examples (pytest -m slow)."""
    long = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
    for test in (test_layers_equal_torch, test_layer_bad_input, test_layer_bad_gradients,
                 test_cell_and_step_bad_input, test_functional_bad_input, test_from_packed_fuzz,
                 test_state_dict_fuzz):
        long(test)()
