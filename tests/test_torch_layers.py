"""Layers against torch 2.13: outputs, final states and every gradient (float64 <= 1e-10)."""
import pytest

torch = pytest.importorskip("torch")

from rnnlab.tools.conformance import TOL, Case, layer_matrix, passed, run_cell_case, run_layer_case  # noqa: E402

FULL = layer_matrix("full", seed=2026)


def _assert(errs, dtype, label):
    bad = {k: v for k, v in errs.items() if not v <= TOL[dtype]}
    assert not bad, f"{label}: ours vs torch beyond {TOL[dtype]}: {bad}"


@pytest.mark.parametrize("case", FULL, ids=[c.label() for c in FULL])
def test_layer_matrix_against_torch(case):
    _assert(run_layer_case(case), case.dtype, case.label())


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "gru", "lstm"])
@pytest.mark.parametrize("size", [1, 7])
def test_sizes_of_one_and_larger(kind, size):
    case = Case(kind=kind, input_size=size, hidden_size=size + (kind == "lstm"), batch=size,
                seq_len=size, num_layers=2, bidirectional=True,
                proj_size=size if kind == "lstm" else 0)
    _assert(run_layer_case(case), "float64", case.label())


def test_errors_are_measured_not_trivially_zero():
    """The harness must detect a wrong parameter: perturb one weight after loading."""
    import rnnlab.tools.conformance as conf
    from rnnlab.nn.layers import GRU
    orig = GRU.load_state_dict

    def broken(self, sd, strict=True):
        out = orig(self, sd, strict)
        self._parameters["bias_hh_l0"][0] += 1e-3
        return out
    GRU.load_state_dict = broken
    try:
        errs = conf.run_layer_case(Case(kind="gru"))
    finally:
        GRU.load_state_dict = orig
    assert not passed(errs, "float64")


@pytest.mark.parametrize("kind", ["rnn", "rnn_relu", "gru", "lstm"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("unbatched", [False, True])
def test_cell_loop_against_torch_cells(kind, bias, unbatched):
    errs = run_cell_case(kind, bias=bias, unbatched=unbatched, seed=3)
    _assert(errs, "float64", f"{kind} cell")


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_float32_cells(kind):
    _assert(run_cell_case(kind, dtype="float32", hidden_size=16, input_size=9, batch=5),
            "float32", kind)


def test_zero_batch_like_torch():
    import numpy as np
    import rnnlab
    for cls, tcls in [(rnnlab.RNN, torch.nn.RNN), (rnnlab.GRU, torch.nn.GRU),
                      (rnnlab.LSTM, torch.nn.LSTM)]:
        tm = tcls(3, 4).double()
        om = cls(3, 4, dtype=np.float64)
        om.load_state_dict(tm.state_dict())
        x = np.zeros((5, 0, 3))
        out, state = om(x)
        tout, _ = tm(torch.tensor(x))
        assert out.shape == tuple(tout.shape) == (5, 0, 4)
        grads = om.backward(np.zeros_like(out))
        assert grads[0].shape == (5, 0, 3) and grads[1].shape == (1, 0, 4)
        assert not any(g.any() for g in om.grads.values())


def test_lstm_state_dict_roundtrip_into_torch():
    import numpy as np
    import rnnlab
    om = rnnlab.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True, dtype=np.float64, seed=1)
    tm = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=True).double()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in om.state_dict().items()})
    assert [n for n, _ in om.named_parameters()] == [n for n, _ in tm.named_parameters()]
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    out, (h, c) = om(x)
    tout, (th, tc) = tm(torch.tensor(x))
    assert np.abs(out - tout.detach().numpy()).max() < 1e-12
    assert np.abs(c - tc.detach().numpy()).max() < 1e-12


@pytest.mark.parametrize("kind, H, N", [("RNN", 4, 3), ("GRU", 4, 3), ("LSTM", 4, 3),
                                         ("GRU", 512, 2), ("LSTM", 384, 2)])
def test_nan_and_inf_propagate_like_torch(kind, H, N):
    """NaN/inf in the input and a NaN weight land in the same places of output and
    gradients as in torch (H = 384, 512 at batch 2: the products per row of a large
    W_hh)."""
    import numpy as np
    import rnnlab
    tm = getattr(torch.nn, kind)(3, H, num_layers=2, bidirectional=True).double()
    om = getattr(rnnlab, kind)(3, H, num_layers=2, bidirectional=True, dtype=np.float64)
    with torch.no_grad():
        tm.weight_hh_l1_reverse[3, 2] = float("nan")          # a NaN weight too
    om.load_state_dict(tm.state_dict())
    x = np.random.default_rng(0).standard_normal((5, N, 3))
    x[2, 0, 1] = np.nan
    x[1, N - 1, 0] = np.inf
    dy = np.random.default_rng(1).standard_normal((5, N, 2 * H))
    out, _ = om(x)
    g = om.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    tout, _ = tm(tx)
    tout.backward(torch.tensor(dy))
    to, tg = tout.detach().numpy(), tx.grad.numpy()
    assert np.array_equal(np.isnan(out), np.isnan(to))
    assert np.array_equal(np.isnan(g[0]), np.isnan(tg))
    finite = np.isfinite(to)
    assert finite.any() and np.abs(out[finite] - to[finite]).max() < 1e-12


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind, H, proj, batch, lengths, bidirectional", [
    ("gru", 512, 0, 1, None, False), ("lstm", 384, 0, 3, [4, 1, 3], True),
    ("lstm", 512, 256, 2, None, False), ("rnn", 1024, 0, 4, None, False),
    ("rnn_relu", 768, 0, 2, [2, 4], False), ("gru", 512, 0, 5, None, False)])
def test_few_rows_and_a_large_w_hh_against_torch(kind, H, proj, batch, lengths,
                                                 bidirectional, dtype):
    """Sequence calls where h W_hh^T is one BLAS product per row from W_hh itself (batch
    up to linalg.FEW_ROWS, W_hh of linalg.BLAS_ROWS weights or more; batch 5 takes the
    matrix product): outputs, states and every gradient against torch."""
    case = Case(kind=kind, input_size=8, hidden_size=H, num_layers=2, proj_size=proj,
                bidirectional=bidirectional, batch=batch, seq_len=4, lengths=lengths,
                dtype=dtype, seed=3)
    _assert(run_layer_case(case), dtype, case.label())
