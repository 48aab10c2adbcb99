"""Training with rnnlab alone equals training with torch: heads, losses, optimizers,
clipping and schedules, float64, from the same weights on the same batches."""
import math

import numpy as np
import pytest

import rnnlab
from rnnlab import Embedding, Linear, clip_grad_norm_, clip_grad_value_, losses, optim

torch = pytest.importorskip("torch")


def _t(a):
    return torch.tensor(np.asarray(a))


# -- heads and losses ------------------------------------------------------------------------
def test_linear_and_embedding_against_torch():
    torch.manual_seed(0)
    tl, te = torch.nn.Linear(5, 3).double(), torch.nn.Embedding(7, 5, padding_idx=2).double()
    ol, oe = Linear(5, 3, dtype=np.float64), Embedding(7, 5, padding_idx=2, dtype=np.float64)
    ol.load_state_dict(tl.state_dict())
    oe.load_state_dict(te.state_dict())
    idx = np.array([[0, 2, 6], [6, 6, 1]])
    e = oe(idx)
    y = ol(e)
    ty = tl(te(torch.tensor(idx)))
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-14)
    dy = np.random.default_rng(0).standard_normal(y.shape)
    ty.backward(_t(dy))
    oe.backward(ol.backward(dy))
    for m, t in ((ol, tl), (oe, te)):
        for name, p in t.named_parameters():
            np.testing.assert_allclose(m.grads[name], p.grad.numpy(), atol=1e-13, err_msg=name)
    assert Linear(3, 2, bias=False).bias is None
    assert Linear(4, 2).weight.shape == (2, 4) and abs(Linear(4, 2).weight).max() <= 0.5
    with pytest.raises(ValueError, match="indices must be in 0..6"):
        oe(np.array([7]))
    with pytest.raises(TypeError, match="integer"):
        oe(np.array([1.0]))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_against_torch(reduction):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)) * 30                 # large: stability matters
    target = np.array([0, 3, -100, 1, 2, -100])
    loss, d = losses.cross_entropy(logits, target, reduction=reduction)
    tx = _t(logits).requires_grad_(True)
    tloss = torch.nn.functional.cross_entropy(tx, torch.tensor(target), reduction=reduction)
    up = rng.standard_normal(6) if reduction == "none" else 1.0
    (tloss * (_t(up) if reduction == "none" else 1)).sum().backward()
    np.testing.assert_allclose(loss, tloss.detach().numpy(), rtol=1e-12)
    got = d * (up[:, None] if reduction == "none" else 1)
    np.testing.assert_allclose(got, tx.grad.numpy(), atol=1e-12)
    pred, tgt = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    l2, d2 = losses.mse(pred, tgt, reduction=reduction)
    tp = _t(pred).requires_grad_(True)
    tl2 = torch.nn.functional.mse_loss(tp, _t(tgt), reduction=reduction)
    tl2.sum().backward()
    np.testing.assert_allclose(l2, tl2.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d2, tp.grad.numpy(), atol=1e-12)


def test_loss_errors():
    with pytest.raises(ValueError, match="target must be in"):
        losses.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match="reduction"):
        losses.mse(np.zeros(2), np.zeros(2), reduction="avg")
    with pytest.raises(ValueError, match="shape"):
        losses.cross_entropy(np.zeros((2, 3)), np.array([0]))
    assert math.isnan(losses.cross_entropy(np.zeros((1, 3)), np.array([-100]))[0])


# -- clipping ------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
def test_clipping_against_torch(norm_type):
    rng = np.random.default_rng(1)
    gs = [rng.standard_normal((3, 4)) * 5, rng.standard_normal(7)]
    lin, emb = Linear(4, 3, dtype=np.float64), Embedding(7, 1, dtype=np.float64)
    lin._add_grads([("weight", gs[0])])
    emb._add_grads([("weight", gs[1][:, None])])
    params = [torch.zeros(3, 4, dtype=torch.float64, requires_grad=True),
              torch.zeros(7, 1, dtype=torch.float64, requires_grad=True)]
    params[0].grad, params[1].grad = _t(gs[0]), _t(gs[1][:, None])
    total = clip_grad_norm_([lin, emb], 2.0, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(params, 2.0, norm_type)
    assert total == pytest.approx(float(ttotal), rel=1e-12)
    np.testing.assert_allclose(lin.grads["weight"], params[0].grad.numpy(), atol=1e-14)
    clip_grad_value_(lin, 0.1)
    torch.nn.utils.clip_grad_value_(params, 0.1)
    np.testing.assert_allclose(lin.grads["weight"], params[0].grad.numpy(), atol=1e-14)
    lin.grads["weight"][0, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        clip_grad_norm_(lin, 1.0, error_if_nonfinite=True)


# -- whole training runs ---------------------------------------------------------------------
class Torch(torch.nn.Module):
    def __init__(self, kind, V, E, H, layers, bi):
        super().__init__()
        self.emb = torch.nn.Embedding(V, E)
        self.rnn = getattr(torch.nn, kind)(E, H, num_layers=layers, bidirectional=bi)
        self.head = torch.nn.Linear(H * (2 if bi else 1), V)

    def forward(self, idx):
        out = self.rnn(self.emb(idx))[0]
        return self.head(out).reshape(-1, self.head.out_features)


OPTIMS = {
    "sgd": (torch.optim.SGD, optim.SGD, dict(lr=0.5)),
    "sgd_momentum": (torch.optim.SGD, optim.SGD,
                     dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    "sgd_dampening": (torch.optim.SGD, optim.SGD, dict(lr=0.1, momentum=0.5, dampening=0.3)),
    "adam": (torch.optim.Adam, optim.Adam, dict(lr=0.01)),
    "adam_wd_amsgrad": (torch.optim.Adam, optim.Adam,
                        dict(lr=0.01, weight_decay=1e-2, amsgrad=True)),
    "adamw": (torch.optim.AdamW, optim.AdamW, dict(lr=0.01)),
}
MODELS = [("GRU", 1, False), ("LSTM", 2, True), ("RNN", 2, False), ("GRU", 2, True)]


# every optimizer, model and clip by default (12 of the 48), all 48 under -m slow
CASES = [pytest.param(m, o, c, id=f"{m[0]}-L{m[1]}{'-bi' if m[2] else ''}-{o}-{c}",
                      marks=[] if (i + j + k) % 4 == 0 else [pytest.mark.slow])
         for i, m in enumerate(MODELS) for j, o in enumerate(OPTIMS)
         for k, c in enumerate([None, 0.5])]


@pytest.mark.parametrize("model, opt_name, clip", CASES)
def test_training_equals_torch(model, opt_name, clip):
    kind, layers, bi = model
    V, E, H, T, N, steps = 11, 5, 6, 7, 3, 40
    torch.manual_seed(0)
    tm = Torch(kind, V, E, H, layers, bi).double()
    emb = Embedding(V, E, dtype=np.float64)
    rnn = getattr(rnnlab, kind)(E, H, num_layers=layers, bidirectional=bi, dtype=np.float64)
    head = Linear(H * (2 if bi else 1), V, dtype=np.float64)
    sd = tm.state_dict()
    for prefix, m in (("emb.", emb), ("rnn.", rnn), ("head.", head)):
        m.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)})
    t_cls, o_cls, kw = OPTIMS[opt_name]
    topt, oopt = t_cls(tm.parameters(), **kw), o_cls([emb, rnn, head], **kw)
    tsched = torch.optim.lr_scheduler.StepLR(topt, 15, 0.5)
    osched = optim.StepLR(oopt, 15, 0.5)
    rng = np.random.default_rng(0)
    for step in range(steps):
        idx = rng.integers(0, V, size=(T + 1, N))
        x, y = idx[:-1], idx[1:].reshape(-1)
        topt.zero_grad()
        tloss = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y))
        tloss.backward()
        oopt.zero_grad()
        out, _ = rnn(emb(x))
        logits = head(out).reshape(-1, V)
        loss, d = losses.cross_entropy(logits, y)
        d_out = head.backward(d.reshape(T, N, V))
        emb.backward(rnn.backward(d_out)[0])
        assert loss == pytest.approx(tloss.item(), abs=1e-10), step
        if clip:
            tn = torch.nn.utils.clip_grad_norm_(tm.parameters(), clip)
            on = clip_grad_norm_([emb, rnn, head], clip)
            assert on == pytest.approx(float(tn), abs=1e-9)
        topt.step()
        oopt.step()
        tsched.step()
        osched.step()
    sd = tm.state_dict()
    for prefix, m in (("emb.", emb), ("rnn.", rnn), ("head.", head)):
        for name, p in m.named_parameters():
            np.testing.assert_allclose(p, sd[prefix + name].numpy(), atol=1e-9, rtol=0,
                                       err_msg=prefix + name)


def test_optimizer_state_resumes_exactly():
    def run(steps, resume_from=None):
        lin = Linear(3, 2, dtype=np.float64, seed=0)
        opt = optim.Adam(lin, lr=0.1)
        if resume_from is not None:
            lin.load_state_dict(resume_from[0])
            opt.load_state_dict(resume_from[1])
        for s in steps:
            x = np.random.default_rng(s).standard_normal((4, 3))
            opt.zero_grad()
            y = lin(x)
            lin.backward(losses.mse(y, np.ones_like(y))[1])
            opt.step()
        return lin.state_dict(), opt.state_dict()
    whole = run(range(10))
    half = run(range(5))
    resumed = run(range(5, 10), resume_from=half)
    for k in whole[0]:
        np.testing.assert_array_equal(whole[0][k], resumed[0][k])
    with pytest.raises(ValueError, match="does not fit"):
        optim.Adam(Linear(4, 2), lr=0.1).load_state_dict(half[1])


def test_cosine_schedule_against_torch():
    lin = Linear(2, 2)
    p = torch.zeros(1, requires_grad=True)
    topt, oopt = torch.optim.SGD([p], lr=0.3), optim.SGD(lin, lr=0.3)
    ts = torch.optim.lr_scheduler.CosineAnnealingLR(topt, 10, eta_min=0.01)
    os_ = optim.CosineAnnealingLR(oopt, 10, eta_min=0.01)
    for _ in range(10):
        topt.step()
        ts.step()
        os_.step()
        assert oopt.param_groups[0]["lr"] == pytest.approx(topt.param_groups[0]["lr"], abs=1e-12)


def test_losses_never_warn_and_give_torchs_values():
    """Huge, infinite and NaN inputs: no warning, and the loss and its gradient are
    torch's (inf, NaN or finite where torch's are)."""
    import warnings
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for big in (1e300, np.inf, np.nan):
        cases = [(lambda a, b: losses.mse(a, b), lambda a, b: F.mse_loss(a, b),
                  np.full(4, big), np.zeros(4)),
                 (lambda a, b: losses.mse(a, b, reduction="sum"),
                  lambda a, b: F.mse_loss(a, b, reduction="sum"),
                  np.full(4, min(big, 3e38), np.float32), np.zeros(4, np.float32)),
                 (lambda a, b: losses.cross_entropy(a, b), F.cross_entropy,
                  np.array([[big, 0.0], [0.0, -big]]), np.array([0, 1]))]
        for ours, theirs, a, b in cases:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                value, grad = ours(a, b)
            ta = torch.tensor(a, requires_grad=True)
            want = theirs(ta, torch.tensor(b))
            want.backward()
            np.testing.assert_allclose(value, want.item(), rtol=1e-6)
            np.testing.assert_allclose(grad, ta.grad.numpy(), rtol=1e-6)
