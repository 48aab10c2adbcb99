"""The questions of docs/questions.md reproduced with numbers (stacked cells also in test_sequences.py)."""
import numpy as np
import pytest

import rnnlab
from rnnlab import columns
from rnnlab.tools.explain import Config, explain


# -- questions 1, 2, 3, 6 through `rnnlab explain`'s functions --------------------------------
@pytest.mark.parametrize("cfg", [
    Config(kind="rnn", input_size=2, hidden_size=2, seq_len=3, batch=1),                 # question 1
    Config(kind="rnn", input_size=3, hidden_size=2, batch_first=True, seq_len=3),       # question 2
    Config(kind="rnn", input_size=3, hidden_size=2, layers=3, seq_len=4, batch=2),      # question 6
    Config(kind="gru", input_size=8, hidden_size=5, layers=3, batch_first=True,
           seq_len=7, batch=4),                                                         # question 3
    Config(kind="gru", input_size=4, hidden_size=2, layers=2, bidirectional=True,
           batch_first=True, seq_len=5, batch=3),                                       # question 3, bidirectional
    Config(kind="lstm", input_size=4, hidden_size=3, layers=2, bidirectional=True,
           proj_size=2, lengths=[3, 1, 4]),                                             # Q4, Q6
    Config(kind="rnn", nonlinearity="relu", layers=2, dtype="float32", batch=2),
])
def test_explain_checks_all_pass(cfg):
    rep = explain(cfg, with_torch=True)
    assert rep.ok, [c for c in rep.checks if not c[3]]
    names = [c[0] for c in rep.checks]
    assert "cell loop vs layer, independent init (expected to differ)" in names      # question 1
    assert "cell loop == layer with copied weights" in names
    assert "hand-written loop == layer output" in names                             # question 2
    assert any("h_n" in n for n in names)                                           # question 3
    text = rep.text()
    assert max(len(line) for line in text.splitlines()) <= 100


def test_explain_bidirectional_map_s2():
    rep = explain(Config(kind="gru", input_size=8, hidden_size=50, layers=3, bidirectional=True,
                         batch_first=True, seq_len=6, batch=3))
    checks = {c[0]: c for c in rep.checks}
    assert checks["backward h_n == output at step 0"][2] == 0.0
    assert checks["backward h_n vs output at last step (expected to differ)"][2] > 1e-3
    assert "output[:, 0, 50:]" in rep.text()


def test_explain_docstring_pseudocode_is_wrong():
    rep = explain(Config(kind="rnn", input_size=2, hidden_size=2, layers=2))
    c = {c[0]: c for c in rep.checks}["docstring pseudo-code (expected to differ)"]
    assert c[3] and c[2] > 1e-3


# -- question 8: a student's column-layout BPTT against rnnlab and torch ----------------------------
def rnn_cell_forward(xt, a_prev, p):
    a_next = np.tanh(p["Wax"] @ xt + p["Waa"] @ a_prev + p["ba"])
    return a_next, (a_next, a_prev, xt)


def rnn_cell_backward(da_next, cache, p):
    a_next, a_prev, xt = cache
    dz = da_next * (1 - a_next ** 2)
    return {"dxt": p["Wax"].T @ dz, "da_prev": p["Waa"].T @ dz, "dWax": dz @ xt.T,
            "dWaa": dz @ a_prev.T, "dba": dz.sum(axis=1, keepdims=True)}


def student_bptt(x, a0, p, da):
    """x (n_x, m, T), da (n_a, m, T): upstream gradient on every hidden state."""
    T = x.shape[2]
    a, caches, a_prev = np.zeros(da.shape), [], a0
    for t in range(T):
        a_prev, cache = rnn_cell_forward(x[:, :, t], a_prev, p)
        a[:, :, t] = a_prev
        caches.append(cache)
    g = {"dx": np.zeros_like(x), "dWax": 0, "dWaa": 0, "dba": 0}
    da_prev = np.zeros_like(a0)
    for t in reversed(range(T)):
        step = rnn_cell_backward(da[:, :, t] + da_prev, caches[t], p)
        g["dx"][:, :, t] = step["dxt"]
        da_prev = step["da_prev"]
        for k in ("dWax", "dWaa", "dba"):
            g[k] = g[k] + step[k]
    g["da0"] = da_prev
    return a, g


def test_s4_column_layout_bptt_equals_rnnlab_and_torch():
    rng = np.random.default_rng(4)
    n_x, n_a, m, T = 4, 5, 3, 6
    p = {"Wax": rng.standard_normal((n_a, n_x)), "Waa": rng.standard_normal((n_a, n_a)) * 0.5,
         "ba": rng.standard_normal((n_a, 1))}
    x = rng.standard_normal((n_x, m, T))
    a0 = rng.standard_normal((n_a, m))
    da = rng.standard_normal((n_a, m, T))
    a, g = student_bptt(x, a0, p, da)

    layer = rnnlab.RNN(4, 5, dtype=np.float64)
    layer.load_state_dict(columns.from_columns(p["Wax"], p["Waa"], p["ba"], layer=True))
    out, _ = layer(columns.sequence_from_columns(x), a0.T[None])
    np.testing.assert_allclose(columns.sequence_to_columns(out), a, atol=1e-13, rtol=0)
    dx, dh0 = layer.backward(columns.sequence_from_columns(da))
    ours = columns.grads_to_columns(layer.grads)
    for k in ("dWax", "dWaa", "dba"):
        np.testing.assert_allclose(ours[k], g[k], atol=1e-12, rtol=0, err_msg=k)
    np.testing.assert_allclose(columns.sequence_to_columns(dx), g["dx"], atol=1e-13, rtol=0)
    np.testing.assert_allclose(dh0[0].T, g["da0"], atol=1e-13, rtol=0)

    # the cell, looped by hand, with the same helpers
    cell = rnnlab.RNNCell(4, 5, dtype=np.float64)
    cell.load_state_dict(columns.from_columns(p["Wax"], p["Waa"], p["ba"]))
    h = a0.T
    for t in range(T):
        h = cell(x[:, :, t].T, h)
    dh = np.zeros((m, n_a))
    for t in reversed(range(T)):
        _, dh = cell.backward(dh + da[:, :, t].T)
    np.testing.assert_allclose(columns.grads_to_columns(cell.grads)["dWaa"], g["dWaa"], atol=1e-12)

    torch = pytest.importorskip("torch")
    tm = torch.nn.RNN(4, 5).double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in
                        columns.from_columns(p["Wax"], p["Waa"], p["ba"], layer=True).items()})
    tx = torch.tensor(columns.sequence_from_columns(x), requires_grad=True)
    tout, _ = tm(tx, torch.tensor(a0.T[None]))
    tout.backward(torch.tensor(columns.sequence_from_columns(da)))
    np.testing.assert_allclose(g["dWaa"], tm.weight_hh_l0.grad.numpy(), atol=1e-12, rtol=0)
    np.testing.assert_allclose(g["dba"][:, 0], tm.bias_ih_l0.grad.numpy(), atol=1e-12, rtol=0)


def test_s4_gradient_norms_vanish_and_explode():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 2, 3)) * 0.1
    norms = {}
    for scale in (0.2, 3.0):
        layer = rnnlab.RNN(3, 16, dtype=np.float64, seed=0)
        layer.weight_hh_l0[...] = rng.standard_normal((16, 16)) * scale / 4
        layer(x)
        d = np.zeros((40, 2, 16))
        d[-1] = 1.0                                   # loss on the last step only
        norms[scale] = columns.gradient_norms(layer, d)[0][0]        # (L, N)
    assert norms[0.2][0].max() < 1e-6 * norms[0.2][-1].max()          # vanishes
    assert norms[3.0][0].max() > 10 * norms[3.0][-1].max()            # explodes (tanh far from saturation)
    assert not any(v.any() for v in rnnlab.RNN(3, 16, dtype=np.float64).grads.values())


def test_gradient_norms_need_forward():
    with pytest.raises(RuntimeError):
        columns.gradient_norms(rnnlab.GRU(2, 3))
