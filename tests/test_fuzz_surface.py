"""Property-based fuzzing of the training and interchange surface (hypothesis): losses,
heads, optimizers, schedules, the train / sample / convert commands. Invalid input:
ValueError or TypeError with a message, never another exception, never a warning.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnlab
from rnnlab.nn import make_layer
from fuzz_helpers import JUNK, cli_exits_cleanly, only_clear_errors, snapshot, unchanged

# -- the training and interchange surface ---------------------------------------------------
@given(JUNK, JUNK, st.sampled_from(["mean", "sum", "none", "avg"]), st.integers(-101, 3))
def test_losses_and_heads_bad_input(a, b, reduction, ignore):
    from rnnlab import Embedding, Linear, losses
    only_clear_errors(lambda: losses.cross_entropy(a, b, ignore_index=ignore,
                                                    reduction=reduction))
    only_clear_errors(lambda: losses.mse(a, b, reduction=reduction))
    lin, emb = Linear(3, 2, dtype=np.float64), Embedding(5, 3, dtype=np.float64)
    lin(np.ones((2, 3)))
    emb(np.array([1, 2]))
    for m, call in ((lin, lambda: lin(a)), (lin, lambda: lin.backward(a)),
                    (emb, lambda: emb(a)), (emb, lambda: emb.backward(b))):
        before = snapshot(m)
        if not only_clear_errors(call):
            unchanged(m, before)


@given(st.sampled_from(["SGD", "Adam", "AdamW"]), st.dictionaries(
    st.sampled_from(["lr", "momentum", "betas", "eps", "weight_decay", "nesterov", "amsgrad",
                     "dampening", "bogus"]), JUNK, max_size=3), JUNK)
def test_optimizers_bad_input(name, kwargs, state):
    from rnnlab import Linear, optim
    lin = Linear(3, 2, dtype=np.float64)
    if only_clear_errors(lambda: getattr(optim, name)(lin, **kwargs)):
        group = getattr(optim, name)(lin, **kwargs).param_groups[0]    # taken: plain numbers
        for key, v in group.items():
            assert type(v) in ((tuple,) if key == "betas" else (float, bool)), (key, v)
            assert key in ("momentum", "dampening") or type(v) is not float or v >= 0
    opt = getattr(optim, name)(lin)
    only_clear_errors(lambda: opt.load_state_dict(state))
    only_clear_errors(lambda: rnnlab.clip_grad_norm_(state, 1.0))


TRAIN_ARGS = ["train", "sample", "convert", "adding", "copy", "charlm", "digits", "--steps",
              "2", "0", "-1", "--hidden", "4", "--batch", "3", "--seq-len", "12", "--lr", "0.1",
              "nan", "--clip", "none", "1", "--optim", "sgd", "adamw", "--model", "lstm",
              "--layers", "--text", "/nonexistent", "--out", "--resume", "RUN", "RUN2",
              "--prime", "ab", "--length", "5", "--temperature", "0", "--prefix", "x.",
              "--allow-unused", "--lengths", "A.npz", "B.onnx", "C.txt", ""]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TRAIN_ARGS), max_size=7))
def test_train_convert_sample_cli_fuzz(tmp_path_factory, argv):
    d = tmp_path_factory.mktemp("cli")
    rnnlab.save(make_layer("gru", 3, 4), d / "A.npz")
    names = {"RUN": d / "run", "RUN2": d / "run2", "A.npz": d / "A.npz",
             "B.onnx": d / "B.onnx", "C.txt": d / "C.txt"}
    argv = [str(names.get(a, a)) for a in argv]
    if "train" in argv and "--steps" not in argv:
        argv += ["--steps", "2"]                       # keep each example short
    cli_exits_cleanly(argv)


@pytest.mark.parametrize("make, exc", [
    (lambda o, m: o.SGD(m, lr="0.1"), TypeError), (lambda o, m: o.SGD(m, lr=np.nan), ValueError),
    (lambda o, m: o.Adam(m, lr=1 + 0j), TypeError), (lambda o, m: o.Adam(m, lr=np.ones(1)),
                                                     TypeError),
    (lambda o, m: o.Adam(m, betas=(0.9,)), TypeError),
    (lambda o, m: o.Adam(m, betas=np.array([1 + 0j, 0.9])), TypeError),
    (lambda o, m: o.AdamW(m, eps=-1.0), ValueError), (lambda o, m: o.Adam(m, amsgrad="yes"),
                                                      TypeError),
    (lambda o, m: o.SGD(m, nesterov=1, momentum=0.9), TypeError),
    (lambda o, m: o.StepLR(o.SGD(m), 2.5), TypeError),
    (lambda o, m: o.CosineAnnealingLR(o.SGD(m), 0), ValueError),
    (lambda o, m: o.StepLR(o.SGD(m), 2, gamma="0.5"), TypeError),
    (lambda o, m: rnnlab.clip_grad_norm_(m, "1"), TypeError),
    (lambda o, m: rnnlab.clip_grad_norm_(m, 1.0, norm_type=None), TypeError),
    (lambda o, m: rnnlab.clip_grad_value_(m, np.ones(2)), TypeError)])
def test_training_settings_are_numbers(make, exc):
    """Optimizer, schedule and clipping settings: real numbers (Python's or NumPy's) and
    bools only, each refused with the setting's name; NaN where torch refuses it too."""
    from rnnlab import Linear, optim
    lin = Linear(3, 2, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(exc) as got:
            make(optim, lin)
    assert str(got.value)
    opt = optim.Adam(lin, lr=np.float32(0.01), betas=np.array([0.8, 0.9]), eps=np.array(1e-6))
    assert opt.param_groups[0]["betas"] == (0.8, 0.9) and opt.param_groups[0]["eps"] == 1e-6



@given(JUNK, JUNK)
def test_loaded_training_states_are_checked(base_lr, lr):
    """A schedule's and an optimizer's load_state_dict take numbers only (the
    constructors' checks); a refused load changes nothing."""
    from rnnlab import Linear, optim
    opt = optim.Adam(Linear(3, 2, dtype=np.float64), lr=0.01)
    sched = optim.StepLR(opt, 2)
    before = (dict(opt.param_groups[0]), sched.state_dict())
    if only_clear_errors(lambda: sched.load_state_dict({"base_lr": base_lr, "last_epoch": 3})):
        assert type(sched.base_lr) is float and sched.last_epoch == 3
    sd = opt.state_dict()
    sd["param_groups"] = [dict(sd["param_groups"][0], lr=lr)]
    if only_clear_errors(lambda: opt.load_state_dict(sd)):
        assert type(opt.param_groups[0]["lr"]) is float and opt.param_groups[0]["lr"] >= 0
    else:
        assert opt.param_groups[0] == before[0]
    only_clear_errors(lambda: sched.load_state_dict(base_lr))


def test_reference_lengths_are_checked():
    from rnnlab import GRU, reference
    m = GRU(2, 3, dtype=np.float64, seed=0)
    x = np.ones((3, 2, 2))
    with pytest.raises(TypeError, match="lengths"):
        reference.run(m, x, lengths=[2.5, 1])
    with pytest.raises(ValueError, match="lengths"):
        reference.run(m, x, lengths=[4, 1])
    assert reference.run(m, x, lengths=np.array([3, 1]))["output"].shape == (3, 2, 3)
