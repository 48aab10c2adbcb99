"""Dropout between layers and padded lengths shorter than the input, against torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import rnnlab  # noqa: E402
from rnnlab.tools.conformance import TOL, Case, run_layer_case  # noqa: E402


@pytest.mark.parametrize("kind", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_training_dropout_equals_torch_layer_stack(kind, bidirectional):
    """torch's fused layer cannot take our masks, so build its definition out of torch
    single-layer modules: layer k+1 reads dropout(layer k's output). Same masks as ours,
    compared forward and backward under autograd."""
    L, I, H, T, N, p = 3, 4, 5, 6, 3, 0.4
    D = 2 if bidirectional else 1
    ours = getattr(rnnlab, kind)(I, H, num_layers=L, dropout=p, bidirectional=bidirectional,
                                 dtype=np.float64, seed=1).train()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((T, N, I))
    out, state = ours(x)
    masks = ours.last_dropout_masks
    assert len(masks) == L - 1 and all(set(np.unique(m)) <= {0.0, 1 / (1 - p)} for m in masks)
    dy = rng.standard_normal(out.shape)
    dx = ours.backward(dy)[0]

    tx = torch.tensor(x, requires_grad=True)
    inp, layers = tx, []
    for k in range(L):
        tl = getattr(torch.nn, kind)(I if k == 0 else D * H, H, bidirectional=bidirectional).double()
        sd = {n.replace(f"_l{k}", "_l0"): torch.from_numpy(v)
              for n, v in ours.state_dict().items() if f"_l{k}" in n}
        tl.load_state_dict(sd)
        layers.append(tl)
        inp, _ = tl(inp)
        if k < L - 1:
            inp = inp * torch.from_numpy(masks[k])
    inp.backward(torch.tensor(dy))
    assert np.abs(out - inp.detach().numpy()).max() <= TOL["float64"]
    assert np.abs(dx - tx.grad.numpy()).max() <= TOL["float64"]
    for k, tl in enumerate(layers):
        for n, prm in tl.named_parameters():
            name = n.replace("_l0", f"_l{k}")
            assert np.abs(ours.grads[name] - prm.grad.numpy()).max() <= TOL["float64"], name


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_lengths_shorter_than_padding(kind):
    """Every sequence shorter than the padded input: steps with no sequence running."""
    case = Case(kind=kind, num_layers=2, bidirectional=True, seq_len=7, batch=3,
                lengths=[2, 4, 1], proj_size=2 if kind == "lstm" else 0, hidden_size=4)
    errs = run_layer_case(case)
    assert all(v <= TOL["float64"] for v in errs.values()), errs
