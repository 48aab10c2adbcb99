"""``rnnlab explain gradients``: why a vanilla RNN's gradients vanish or explode, and what
clipping does — every claim checked on the numbers printed.

Part 1. A tanh RNN whose W_hh is rho times an orthogonal matrix (all singular values rho,
so its spectral radius is rho). Backpropagating a loss at the last step, BPTT multiplies
|dL/dh_t| by the Jacobian W_hh^T diag(1 - h_t^2) once per step back, so the norm can change
by at most a factor rho per step (tanh' <= 1): below 1 it must vanish geometrically; above
1 it can explode.

Part 2. The same RNN (rho = 1.5) trained by plain SGD on the adding problem, without and
with clip_grad_norm_: without, the loss runs to inf/NaN; with, it trains below the
baseline of predicting 1.0.
"""
import math

import numpy as np

from ..columns import gradient_norms
from ..nn import SequenceModel, enable_grad, make_layer
from ..train import losses, optim
from ..train.clip import clip_grad_norm_
from ..train.tasks import Adding
from .explain import Report


def orthogonal(H, rng):
    q, r = np.linalg.qr(rng.standard_normal((H, H)))
    return q * np.sign(np.diag(r))


def norms_at(rho, T, H, seed):
    """|dL/dh_t| (T, N) for a tanh RNN with W_hh = rho Q, loss = g . output[-1]."""
    rng = np.random.default_rng(seed)
    layer = make_layer("rnn", 2, H, dtype=np.float64, seed=seed)
    layer.weight_hh_l0 = rho * orthogonal(H, rng)
    x = rng.standard_normal((T, 8, 2)) * 0.5
    with enable_grad():
        out, _ = layer(x)
    d = np.zeros_like(out)
    d[-1] = rng.standard_normal((8, H)) / math.sqrt(H)
    return gradient_norms(layer, d)[0][0]


def train_adding(rho, clip, steps, seed, T=10, H=32, lr=0.1):
    """Loss and gradient norms (before, after clipping) per step; stops at a non-finite
    loss."""
    task = Adding(T)
    model = SequenceModel("rnn", 2, H, 1, dtype=np.float64, seed=seed)
    model.rnn.weight_hh_l0 = rho * orthogonal(H, np.random.default_rng(seed))
    opt = optim.SGD(model, lr=lr)
    hist = {"loss": [], "norm": [], "clipped": []}
    with np.errstate(all="ignore"):
        for step in range(steps):
            x, y = task.batch(np.random.default_rng([seed, step]), 32)
            model.zero_grad()
            pred, _ = model(x.astype(np.float64))
            loss, d = losses.mse(pred, y)
            model.backward(d)
            norm = clip_grad_norm_(model, clip if clip else math.inf)
            opt.step()
            hist["loss"].append(loss)
            hist["norm"].append(norm)
            hist["clipped"].append(min(norm, clip) if clip else norm)
            if not math.isfinite(loss):
                break
    return hist, task.baseline()


def explain_gradients(seq_len=100, hidden=32, radii=(0.5, 1.0, 1.5), seed=0, steps=1000,
                      clip=1.0, png=None):
    rep = Report()
    T = seq_len
    norms = {rho: norms_at(rho, T, hidden, seed) for rho in radii}
    lines = [f"RNN(2, {hidden}), tanh, W_hh = rho * Q (Q orthogonal: every singular value of "
             "W_hh is rho),",
             f"{T} steps, 8 sequences; loss = g . output[{T - 1}] for a random g. BPTT carries",
             "dL/dh_t back one step at a time through the Jacobian W_hh^T diag(1 - h_t^2), so",
             "|dL/dh_(t-1)| <= rho * |dL/dh_t|  (tanh' <= 1).", ""]
    shown = sorted({t for t in (T - 1, T - 2, T - 5, T - 10, T - 20, T - 50, 0) if 0 <= t < T},
                   reverse=True)
    lines.append("mean |dL/dh_t|   " + "".join(f"rho={rho:<8g}" for rho in radii))
    for t in shown:
        lines.append(f"  t = {t:<10d}" + "".join(f"{norms[rho][t].mean():<12.2e}"
                                                 for rho in radii))
    rates = {}
    for rho in radii:
        n = norms[rho]
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = n[:-1] / n[1:]                        # per step back, per sequence
            rates[rho] = float(np.exp(np.nanmean(np.log(ratio))))
        lines.append(f"rho = {rho:g}: |dL/dh| changes by {rates[rho]:.3f} per step back on "
                     f"average, never by more than rho "
                     + rep.claim(f"per-step factor <= rho at rho={rho:g}",
                                 np.nanmax(ratio) <= rho * (1 + 1e-12)))
    lines.append("")
    ordered = [rates[r] for r in sorted(radii)]
    lines.append("the growth rate rises with rho " + rep.claim(
        "growth rate increases with rho", all(a < b for a, b in zip(ordered, ordered[1:]))))
    lo, hi = min(radii), max(radii)
    if lo < 1:
        bound = lo ** (T - 1)
        got = float(np.max(norms[lo][0] / norms[lo][-1]))
        lines.append(f"rho = {lo:g} vanishes: |dL/dh_0| / |dL/dh_{T - 1}| = {got:.1e} <= "
                     f"rho^{T - 1} = {bound:.1e} " + rep.claim(
                         "vanishing bound rho^(T-1)", got <= bound * (1 + 1e-9)))
    if hi > 1:
        grows = rates[hi] > 1
        lines.append(f"rho = {hi:g}: |dL/dh_0| = {norms[hi][0].mean():.1e} vs "
                     f"{norms[hi][-1].mean():.1e} at the loss: "
                     + ("it explodes here." if grows else "it does not explode here."))
        lines.append("  rho > 1 is needed for growth but not enough: saturated units "
                     "(tanh' ~ 0) shrink")
        lines.append("  the factor; only rho <= 1 rules explosion out "
                     + rep.claim("no growth without rho > 1",
                                 all(rates[r] <= 1 + 1e-12 for r in radii if r <= 1)))
    lines += ["Gates (GRU, LSTM) add paths whose Jacobian is close to the identity (LSTM's",
              "c' = f * c + ...), which is how they keep gradients alive over long spans."]
    rep.add("Gradients through time vs the spectral radius of W_hh", lines)

    rho = hi if hi > 1 else 1.5
    raw, base = train_adding(rho, None, steps, seed)
    clipped, _ = train_adding(rho, clip, steps, seed)
    bad = next((i for i, v in enumerate(raw["loss"]) if not math.isfinite(v)), None)
    tail = float(np.mean(clipped["loss"][-50:]))
    lines = [f"The same RNN (hidden {hidden}, rho = {rho:g}) on the adding problem (10 steps),",
             f"plain SGD lr 0.1, batch 32, up to {steps} steps; baseline (always 1.0) MSE "
             f"{base:.3f}",
             "on its fixed test set (1/6 ~ 0.167 in expectation).",
             f"  without clipping: largest gradient norm {max(raw['norm']):.2e}; "
             + (f"loss non-finite at step {bad + 1}" if bad is not None else
                f"final loss {raw['loss'][-1]:.3g}"),
             "    it blows up to inf/NaN " + rep.claim("unclipped training blows up to "
                                                       "inf/NaN", bad is not None),
             f"  clip_grad_norm_(max_norm={clip:g}): every loss finite, mean of the last 50 "
             f"{tail:.4f}",
             "    it stays finite and beats the baseline " + rep.claim(
                 "clipped training stays finite and beats the baseline",
                 all(math.isfinite(v) for v in clipped["loss"]) and tail < base),
             "Clipping rescales the whole gradient when its norm exceeds max_norm: the step",
             "keeps its direction but cannot throw the weights off the cliff (Pascanu et al.",
             "2013). rnnlab train ... --clip NORM does this in the training loop."]
    rep.add("Clipping", lines)
    if png:
        _figure(png, norms, raw, clipped, clip, rho)
        rep.add("Figure", [f"gradient norms per step, loss and gradient norm curves written to "
                           f"{png}"])
    return rep


def _figure(path, norms, raw, clipped, clip, rho):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("rnnlab explain --png needs matplotlib: pip install matplotlib") \
            from None
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(13, 3.6))
    for r, n in norms.items():
        a.plot(np.arange(n.shape[0]), n.mean(axis=1), label=f"rho = {r:g}")
    a.set_yscale("log")
    a.set_xlabel("t (loss at the last step)")
    a.set_ylabel("|dL/dh_t|")
    a.set_title("gradient through time", fontsize=10)
    a.legend(fontsize=8)
    for hist, label in ((raw, "no clipping"), (clipped, f"clip {clip:g}")):
        steps = np.arange(1, len(hist["loss"]) + 1)
        with np.errstate(all="ignore"):
            b.plot(steps, np.minimum(hist["loss"], 1e6), lw=0.8, label=label)
            c.plot(steps, np.minimum(hist["norm"], 1e12), lw=0.8, label=f"{label}: before")
    c.plot(np.arange(1, len(clipped["clipped"]) + 1), clipped["clipped"], lw=0.8,
           label=f"clip {clip:g}: after")
    for ax, title, ylabel in ((b, f"training loss (rho = {rho:g}; drawn up to 1e6)", "MSE"),
                              (c, "global gradient norm (drawn up to 1e12)", "norm")):
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
