"""Recurrent variants torch has no class for, against oracles nobody here wrote: the GRU
with the reset gate before the hidden product (GRU(reset_after=False), ONNX's
linear_before_reset=0, Keras's reset_after=False). Forward: onnxruntime on the exported
graph and ONNX's reference evaluator in float64 on a hand-built node; gradients: JAX
autodiff of a scan written here from the ONNX spec, independently of rnnlab, in float64;
central differences run in `rnnlab gradcheck` (every family)."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnnlab
from variant_oracles import float64_jax  # noqa: F401  (the autouse fixture)
from variant_oracles import reverse_rows

jax = pytest.importorskip("jax")
jnp = jax.numpy


def _gru_reset_before(p, x, h0, lengths):
    """ONNX's GRU with linear_before_reset=0, torch's layout and gate blocks (r | z | n),
    one direction over (T, N, I); a row stops at its length (h kept, output 0 after)."""
    H = p["w_hh"].shape[1]
    T = x.shape[0]

    def cell(h, inputs):
        x_t, t = inputs
        ax = x_t @ p["w_ih"].T + p["b_ih"]
        ah = h @ p["w_hh"][:2 * H].T + p["b_hh"][:2 * H]
        r = jax.nn.sigmoid(ax[:, :H] + ah[:, :H])
        z = jax.nn.sigmoid(ax[:, H:2 * H] + ah[:, H:])
        n = jnp.tanh(ax[:, 2 * H:] + (r * h) @ p["w_hh"][2 * H:].T + p["b_hh"][2 * H:])
        h_new = (1 - z) * n + z * h
        live = (t < lengths)[:, None]
        return jnp.where(live, h_new, h), jnp.where(live, h_new, 0.0)
    h_n, out = jax.lax.scan(cell, h0, (x, jnp.arange(T)))
    return out, h_n


def _jax_layer(params, x, h0, lengths, L, D):
    """Stacked, optionally bidirectional; params[k][d] dicts; h0 (L*D, N, H)."""
    inp, h_n = x, []
    for k in range(L):
        outs = []
        for d in range(D):
            xin = inp if d == 0 else reverse_rows(jnp, inp, lengths)
            out, hn = _gru_reset_before(params[k][d], xin, h0[k * D + d], lengths)
            outs.append(out if d == 0 else reverse_rows(jnp, out, lengths))
            h_n.append(hn)
        inp = jnp.concatenate(outs, axis=2)
    return inp, jnp.stack(h_n)


CONFIGS = dict(L=st.integers(1, 2), bi=st.booleans(), lengths=st.booleans(),
               bias=st.booleans(), batch_first=st.booleans(), seed=st.integers(0, 999))


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(**CONFIGS)
def test_gradients_equal_jax_autodiff(L, bi, lengths, bias, batch_first, seed):
    _against_jax(L, bi, lengths, bias, batch_first, seed)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(**CONFIGS)
def test_gradients_equal_jax_autodiff_long(L, bi, lengths, bias, batch_first, seed):
    _against_jax(L, bi, lengths, bias, batch_first, seed)


def _against_jax(L, bi, lengths, bias, batch_first, seed):
    T, N, I, H = 4, 3, 2, 3
    D = 2 if bi else 1
    rng = np.random.default_rng(seed)
    m = rnnlab.GRU(I, H, num_layers=L, bidirectional=bi, bias=bias, batch_first=batch_first,
                   reset_after=False, dtype=np.float64, seed=seed)
    x = rng.standard_normal((N, T, I) if batch_first else (T, N, I))
    h0 = rng.standard_normal((L * D, N, H))
    lens = rng.integers(1, T + 1, N) if lengths else np.full(N, T)
    out, h_n = m(x, h0, lengths=lens if lengths else None)
    g_out, g_h = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    dx, dh0 = m.backward(g_out, g_h)

    names = [[(f"_l{k}" + ("_reverse" if d else "")) for d in range(D)] for k in range(L)]

    def loss(params, x, h0):
        xt = jnp.swapaxes(x, 0, 1) if batch_first else x
        o, hn = _jax_layer(params, xt, h0, jnp.asarray(lens), L, D)
        o = jnp.swapaxes(o, 0, 1) if batch_first else o
        return jnp.sum(o * g_out) + jnp.sum(hn * g_h), (o, hn)
    zeros = np.zeros(3 * H)
    params = [[{"w_ih": getattr(m, "weight_ih" + s), "w_hh": getattr(m, "weight_hh" + s),
                "b_ih": getattr(m, "bias_ih" + s) if bias else zeros,
                "b_hh": getattr(m, "bias_hh" + s) if bias else zeros} for s in row]
              for row in names]
    (gp, gx, gh0), (o, hn) = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(params, x, h0)
    np.testing.assert_allclose(out, o, atol=1e-12)
    np.testing.assert_allclose(h_n, hn, atol=1e-12)
    np.testing.assert_allclose(dx, gx, atol=1e-10)
    np.testing.assert_allclose(dh0, gh0, atol=1e-10)
    for k, row in enumerate(names):
        for d, s in enumerate(row):
            for ours, theirs in (("weight_ih", "w_ih"), ("weight_hh", "w_hh"),
                                 ("bias_ih", "b_ih"), ("bias_hh", "b_hh")):
                if ours.startswith("bias") and not bias:
                    continue
                np.testing.assert_allclose(m.grads[ours + s], gp[k][d][theirs], atol=1e-10)


@pytest.mark.parametrize("kw", [{}, {"num_layers": 2, "bidirectional": True},
                                {"batch_first": True}])
@pytest.mark.parametrize("lengths", [False, True])
def test_forward_equals_onnxruntime(tmp_path, kw, lengths):
    ort = pytest.importorskip("onnxruntime")
    m = rnnlab.GRU(3, 4, reset_after=False, seed=5, **kw)
    rnnlab.export_onnx(m, tmp_path / "g.onnx", lengths=lengths)
    import onnx
    node = next(n for n in onnx.load(str(tmp_path / "g.onnx")).graph.node if n.op_type == "GRU")
    assert any(a.name == "linear_before_reset" and a.i == 0 for a in node.attribute)
    x = np.random.default_rng(0).standard_normal((2, 5, 3) if kw.get("batch_first") else
                                                 (5, 2, 3)).astype(np.float32)
    lens = np.array([5, 2])
    feeds = {"input": x, **({"lengths": lens} if lengths else {})}
    s = ort.InferenceSession(str(tmp_path / "g.onnx"), providers=["CPUExecutionProvider"])
    want = s.run(None, feeds)
    got = m(x, lengths=lens if lengths else None)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    assert repr(rnnlab.import_onnx(tmp_path / "g.onnx")) == repr(m)


def test_cells_steps_and_files():
    x = np.random.default_rng(1).standard_normal((5, 2, 3))
    m = rnnlab.GRU(3, 4, num_layers=2, reset_after=False, dtype=np.float64, seed=2)
    out = m(x)[0]
    ys, state = [], None
    for t in range(5):
        y, state = m.step(x[t], state)
        ys.append(y)
    np.testing.assert_allclose(np.stack(ys), out, atol=1e-13)
    frozen = m.eval().freeze()
    ys, state = [], None
    for t in range(5):
        y, state = frozen.step(x[t], state)
        ys.append(y)
    np.testing.assert_allclose(np.stack(ys), out, atol=1e-13)
    cell = rnnlab.GRUCell(3, 4, reset_after=False, dtype=np.float64, seed=3)
    layer = rnnlab.GRU(3, 4, reset_after=False, dtype=np.float64)
    layer.load_state_dict({k + "_l0": v for k, v in cell.state_dict().items()})
    hs, _ = rnnlab.run_cells(cell, x)
    np.testing.assert_allclose(hs, layer(x)[0], atol=1e-13)
    assert repr(cell) == "GRUCell(3, 4, reset_after=False)"
    with pytest.raises(TypeError, match="reset_after is fixed"):
        m.reset_after = True
    with pytest.raises(TypeError, match="reset_after"):
        rnnlab.GRU(3, 4, reset_after="no")


def test_torch_is_refused_by_name(tmp_path):
    from rnnlab.tools import cli
    m = rnnlab.GRU(3, 4, reset_after=False)
    rnnlab.save(m, tmp_path / "g.safetensors")
    assert cli.main(["convert", str(tmp_path / "g.safetensors"), str(tmp_path / "g.pt")]) == 2
    assert not (tmp_path / "g.pt").exists()


def test_explain_prints_the_variant(capsys):
    from rnnlab.tools import cli
    assert cli.main(["explain", "gru", "--no-reset-after", "--layers", "2", "--lengths",
                     "3,1"]) == 0
    out = capsys.readouterr().out
    assert "GRU(3, 2, num_layers=2, reset_after=False)" in out
    assert "(r * h) W_hn^T" in out and "0 unexpected" in out
    assert cli.main(["explain", "lstm", "--no-reset-after"]) == 2
    assert "only for gru" in capsys.readouterr().err


# -- direction="reverse": one direction over reversed time ---------------------------------
def _torch_reverse(torch, cls, m, x, lengths, h0):
    """torch computes a reverse-only stack as the reverse halves of single-layer
    bidirectional modules, chained (its own packed semantics with lengths)."""
    inp, finals = torch.tensor(x, requires_grad=True), []
    x_t = inp
    L = m.num_layers
    for k in range(L):
        t = getattr(torch.nn, cls)(m.input_size if k == 0 else m.hidden_size, m.hidden_size,
                                   bidirectional=True, dtype=torch.float64)
        with torch.no_grad():
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(t, n + "_l0_reverse").copy_(torch.tensor(getattr(m, f"{n}_l{k}")))
        hx = None
        if h0 is not None:
            hk = torch.cat([torch.zeros(1, *h0.shape[1:], dtype=torch.float64), h0[k:k + 1]])
            hx = (hk, torch.zeros_like(hk)) if cls == "LSTM" else hk
        if lengths is not None:
            packed = torch.nn.utils.rnn.pack_padded_sequence(x_t, lengths,
                                                             enforce_sorted=False)
            o, s = t(packed, hx)
            o = torch.nn.utils.rnn.pad_packed_sequence(o, total_length=x.shape[0])[0]
        else:
            o, s = t(x_t, hx)
        x_t = o[:, :, m.hidden_size:]
        finals.append((s[0] if cls == "LSTM" else s)[1])
    return inp, x_t, torch.stack(finals)


@pytest.mark.parametrize("cls", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("L, lengths", [(1, None), (2, [5, 3, 1]), (2, None)])
def test_reverse_layers_equal_torchs_reverse_direction(cls, L, lengths):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(L)
    m = getattr(rnnlab, cls)(3, 4, num_layers=L, direction="reverse", dtype=np.float64,
                             seed=1)
    x = rng.standard_normal((5, 3, 3))
    h0 = rng.standard_normal((L, 3, 4))
    hx = h0 if cls != "LSTM" else (h0, np.zeros_like(h0))
    out, state = m(x, hx, lengths=lengths)
    h_n = state[0] if cls == "LSTM" else state
    inp, want, h_want = _torch_reverse(torch, cls, m, x, lengths, torch.tensor(h0,
                                                                           requires_grad=True))
    np.testing.assert_allclose(out, want.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(h_n, h_want.detach().numpy(), atol=1e-12)
    g_out, g_h = rng.standard_normal(out.shape), rng.standard_normal(h_n.shape)
    grads = m.backward(g_out, g_h) if cls != "LSTM" else m.backward(g_out, g_h, None)
    ((want * torch.tensor(g_out)).sum() + (h_want * torch.tensor(g_h)).sum()).backward()
    np.testing.assert_allclose(grads[0], inp.grad.numpy(), atol=1e-10)


def test_reverse_in_float32_compiled_and_numpy_paths_agree():
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    m = rnnlab.LSTM(3, 8, num_layers=2, direction="reverse", seed=0)
    with rnnlab.no_grad():
        fast = np.asarray(m(x)[0])
        from rnnlab.sequence import kernels
        with kernels.disabled():
            slow = np.asarray(m(x)[0])
    np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kw", [dict(cls="GRU"), dict(cls="LSTM", proj_size=2),
                                dict(cls="RNN", num_layers=2)])
def test_reverse_exports_and_imports_through_onnx(tmp_path, kw):
    ort = pytest.importorskip("onnxruntime")
    kw = dict(kw)
    cls = getattr(rnnlab, kw.pop("cls"))
    m = cls(3, 4, direction="reverse", seed=4, **kw)
    rnnlab.export_onnx(m, tmp_path / "r.onnx", lengths=True)
    x = np.random.default_rng(1).standard_normal((5, 2, 3)).astype(np.float32)
    lens = np.array([5, 2])
    s = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    want = s.run(None, {"input": x, "lengths": lens})
    got = m(x, lengths=lens)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-5, atol=2e-6)
    back = rnnlab.import_onnx(tmp_path / "r.onnx")
    assert back.direction == "reverse" and repr(back) == repr(m)


def test_reverse_is_refused_where_there_is_none(tmp_path):
    from rnnlab.tools import cli
    m = rnnlab.GRU(3, 4, direction="reverse")
    assert repr(m) == "GRU(3, 4, direction='reverse')"
    with pytest.raises(ValueError, match="needs a forward layer"):
        m.step(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="bidirectional=True already runs"):
        rnnlab.GRU(3, 4, bidirectional=True, direction="reverse")
    with pytest.raises(ValueError, match="direction must be"):
        rnnlab.GRU(3, 4, direction="backward")
    rnnlab.save(m, tmp_path / "r.safetensors")
    assert rnnlab.load(tmp_path / "r.safetensors").direction == "reverse"
    assert cli.main(["convert", str(tmp_path / "r.safetensors"), str(tmp_path / "r.pt")]) == 2
    if __import__("importlib").util.find_spec("keras"):
        from rnnlab.io.keras import to_keras
        with pytest.raises(ValueError, match="go_backwards"):
            to_keras(m)
    sd = m.state_dict()
    assert rnnlab.from_state_dict(sd, direction="reverse").direction == "reverse"
    with pytest.raises(ValueError, match="reset_after is only for GRU"):
        rnnlab.from_state_dict(rnnlab.LSTM(3, 4).state_dict(), reset_after=False)
