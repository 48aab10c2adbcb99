"""Conformance against the installed torch: the oracle for every number rnnlab computes.

Each case builds the torch module (its own random initialisation, non-zero biases),
copies its parameters into the rnnlab module with load_state_dict, runs both on the same
random input and states, backpropagates the same random upstream gradients, and returns
the max abs error of output, final states and every gradient. Shared by the test suite
and ``rnnlab verify``. torch is imported lazily; nothing else in rnnlab needs it.
"""
import itertools

import numpy as np

from ..cells import FAMILIES, by_kind
from ..nn import backprop_cells, make_cell, run_cells
from .cases import TOL, Case, error, within

__all__ = ["TOL", "Case", "error", "within", "passed", "import_torch", "torch_forward",
           "torch_module", "run_layer_case", "run_cell_case", "layer_matrix"]
passed = within


def import_torch():
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("this needs torch (pip install 'torch==2.13.0'); rnnlab itself "
                          "does not") from exc
    return torch


def torch_forward(tm, tx, hx=None, lengths=None, batch_first=False):
    """torch module on a padded batch; with lengths through pack_padded_sequence
    (enforce_sorted=False) and back with pad_packed_sequence to the input's length."""
    if lengths is None:
        return tm(tx, hx)
    import torch
    pack = torch.nn.utils.rnn
    packed = pack.pack_padded_sequence(tx, torch.tensor(lengths), batch_first=batch_first,
                                       enforce_sorted=False)
    out, state = tm(packed, hx)
    T = tx.shape[1] if batch_first else tx.shape[0]
    return pack.pad_packed_sequence(out, batch_first=batch_first, total_length=T)[0], state


def torch_module(case, cell=False):
    """The torch module of a Case (its own random initialisation, torch.manual_seed(seed)),
    in the case's dtype."""
    torch = import_torch()
    fam = by_kind(case.kind)
    if fam.torch_class is None:
        raise ValueError(f"family {case.kind!r} has no torch equivalent to compare with")
    torch.manual_seed(case.seed)
    if cell:
        cls = getattr(torch.nn, fam.torch_class + "Cell")
        tm = cls(case.input_size, case.hidden_size, bias=case.bias, **fam.options)
    else:
        tm = getattr(torch.nn, fam.torch_class)(case.input_size, case.hidden_size,
                                                **case.layer_kwargs(), **fam.options)
    return tm.to(getattr(torch, case.dtype))


def run_layer_case(case):
    """Returns {quantity: error} for one Case; quantities are output, h_n, (c_n), dx,
    dh0, (dc0) and d<parameter name> for every parameter."""
    torch = import_torch()
    tm = torch_module(case)
    om = case.make_layer()
    om.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(case.seed)
    T, N, D = case.seq_len, case.batch, 2 if case.bidirectional else 1
    H_out = case.proj_size or case.hidden_size
    LD = case.num_layers * D
    if case.unbatched:
        xs, hs, cs = (T, case.input_size), (LD, H_out), (LD, case.hidden_size)
    else:
        xs = (N, T, case.input_size) if case.batch_first else (T, N, case.input_size)
        hs, cs = (LD, N, H_out), (LD, N, case.hidden_size)
    x = rng.standard_normal(xs).astype(case.dtype)
    h0 = rng.standard_normal(hs).astype(case.dtype) if case.with_state else None
    c0 = rng.standard_normal(cs).astype(case.dtype) if case.with_state else None
    is_lstm = by_kind(case.kind).has_cell_state

    # torch side
    tx = torch.tensor(x, requires_grad=True)
    th0 = None if h0 is None else torch.tensor(h0, requires_grad=True)
    tc0 = None if c0 is None else torch.tensor(c0, requires_grad=True)
    thx = ((th0, tc0) if case.with_state else None) if is_lstm else th0
    tout, tstate = torch_forward(tm, tx, thx, case.lengths, case.batch_first)
    th_n, tc_n = tstate if is_lstm else (tstate, None)
    d_out = rng.standard_normal(tuple(tout.shape)).astype(case.dtype)
    d_hn = rng.standard_normal(tuple(th_n.shape)).astype(case.dtype)
    d_cn = None if tc_n is None else rng.standard_normal(tuple(tc_n.shape)).astype(case.dtype)
    loss = (tout * torch.tensor(d_out)).sum() + (th_n * torch.tensor(d_hn)).sum()
    if tc_n is not None:
        loss = loss + (tc_n * torch.tensor(d_cn)).sum()
    loss.backward()

    # rnnlab side
    hx = ((h0, c0) if case.with_state else None) if is_lstm else h0
    out, state = om(x, hx, lengths=case.lengths)
    grads = om.backward(d_out, d_hn, d_cn) if is_lstm else om.backward(d_out, d_hn)
    h_n, c_n = state if is_lstm else (state, None)

    dt = case.dtype
    errs = {"output": error(out, tout, dt), "h_n": error(h_n, th_n, dt)}
    if is_lstm:
        errs["c_n"] = error(c_n, tc_n, dt)
    errs["dx"] = error(grads[0], tx.grad, dt)
    if case.with_state:
        errs["dh0"] = error(grads[1], th0.grad, dt)
        if is_lstm:
            errs["dc0"] = error(grads[2], tc0.grad, dt)
    for name, p in tm.named_parameters():
        errs["d" + name] = error(om.grads[name], p.grad, dt)
    return errs


def run_cell_case(kind, input_size=3, hidden_size=4, batch=2, steps=4, bias=True,
                  unbatched=False, dtype="float64", seed=0):
    """A Python loop of cells over time, forward and backward (LIFO), against the same loop
    of torch cells under autograd. Returns {quantity: error}."""
    torch = import_torch()
    case = Case(kind, input_size, hidden_size, bias=bias, dtype=dtype, seed=seed)
    tm = torch_module(case, cell=True)
    om = make_cell(kind, input_size, hidden_size, bias=bias, dtype=dtype)
    om.load_state_dict(tm.state_dict())
    rng = np.random.default_rng(seed)
    lead = () if unbatched else (batch,)
    xs = rng.standard_normal((steps,) + lead + (input_size,)).astype(dtype)
    h0 = rng.standard_normal(lead + (hidden_size,)).astype(dtype)
    c0 = rng.standard_normal(lead + (hidden_size,)).astype(dtype)
    dhs = rng.standard_normal((steps,) + lead + (hidden_size,)).astype(dtype)
    is_lstm = by_kind(kind).has_cell_state

    tx = torch.tensor(xs, requires_grad=True)
    th0 = torch.tensor(h0, requires_grad=True)
    tc0 = torch.tensor(c0, requires_grad=True)
    th, tc, loss = th0, tc0, 0
    for t in range(steps):
        if is_lstm:
            th, tc = tm(tx[t], (th, tc))
        else:
            th = tm(tx[t], th)
        loss = loss + (th * torch.tensor(dhs[t])).sum()
    loss.backward()

    hs, state = run_cells(om, xs, (h0, c0) if is_lstm else h0)
    dxs, d_state = backprop_cells(om, dhs)
    h, c = state if is_lstm else (state, None)
    dh, dc = d_state if is_lstm else (d_state, None)
    errs = {"h_T": error(h, th, dtype), "dx": error(dxs, tx.grad, dtype),
            "dh0": error(dh, th0.grad, dtype)}
    if is_lstm:
        errs["c_T"] = error(c, tc, dtype)
        errs["dc0"] = error(dc, tc0.grad, dtype)
    for name, p in tm.named_parameters():
        errs["d" + name] = error(om.grads[name], p.grad, dtype)
    return errs


def layer_matrix(level="quick", seed=0):
    """Configurations for ``rnnlab verify`` and the test suite.

    quick: every family x layers {1, 2} x bidirectional x batch_first x bias, each with a
    rotating choice of state given/None, unbatched, lengths and proj_size, in float64, plus
    a float32 set. full: the whole product, layers 1..3, both dtypes.
    """
    rng = np.random.default_rng(seed)
    kinds = [k for k, f in FAMILIES.items() if f.torch_class]
    cases = []
    layers = (1, 2) if level == "quick" else (1, 2, 3)
    dtypes = ("float64",) if level == "quick" else ("float64", "float32")
    for i, (kind, L, bi, bf, bias, dt) in enumerate(itertools.product(
            kinds, layers, (False, True), (False, True), (True, False), dtypes)):
        variants = [dict(with_state=True), dict(with_state=False), dict(unbatched=True),
                    dict(lengths=True)]
        if FAMILIES[kind].supports_projection:
            variants += [dict(proj_size=True), dict(proj_size=True, lengths=True),
                         dict(proj_size=True, unbatched=True),
                         dict(proj_size=True, with_state=False)]
        chosen = variants if level == "full" else [variants[i % len(variants)]]
        for v in chosen:
            H = int(rng.integers(1, 6)) if i % 5 else 1
            H = max(H, 2) if v.get("proj_size") else H
            T = int(rng.integers(1, 7))
            N = int(rng.integers(1, 5))
            c = Case(kind=kind, input_size=int(rng.integers(1, 5)), hidden_size=H,
                     num_layers=L, bidirectional=bi, batch_first=bf, bias=bias, dtype=dt,
                     seq_len=T, batch=N, seed=int(rng.integers(1 << 30)),
                     with_state=v.get("with_state", True), unbatched=v.get("unbatched", False))
            if v.get("proj_size"):
                c.proj_size = int(rng.integers(1, H))
            if v.get("lengths") and not c.unbatched:
                c.lengths = [int(n) for n in rng.integers(1, T + 1, size=N)]
                c.lengths[int(rng.integers(N))] = T            # torch's padded length is max(lengths)
            cases.append(c)
    if level == "quick":
        for kind in kinds:
            cases.append(Case(kind=kind, num_layers=2, bidirectional=True, dtype="float32",
                              seq_len=6, batch=3, input_size=5, hidden_size=7,
                              proj_size=3 if FAMILIES[kind].supports_projection else 0,
                              seed=7))
    return cases
