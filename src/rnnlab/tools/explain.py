"""``rnnlab explain``: what a recurrent layer computes, for the user's configuration, with
the numbers checked while they watch: the equations, every step by a plain hand loop, the
output <-> h_n map, a cell loop against the layer, how layers stack, and the gradient
reaching each step (docs/questions.md lists the questions each section answers).
"""
import textwrap
from dataclasses import dataclass, field

import numpy as np

from .. import reference as R
from ..cells import by_kind, variant
from ..nn import enable_grad, make_cell, make_layer, no_grad, run_cells
from .cases import TOL, Case, error

HAND_CHECKED = 4        # sequences recomputed by the plain loop and compared
SHOWN_STEPS = 6         # with more steps, the first and last SHOWN_STEPS // 2 are printed


def Config(kind="gru", input_size=3, hidden_size=2, layers=1, bidirectional=False,
           batch_first=False, proj_size=0, seq_len=3, batch=1, seed=0, dtype="float64",
           lengths=None, nonlinearity="tanh", reset_after=True, options=None):
    """An explain configuration: a Case with explain's small defaults; RNN's relu is the
    family "rnn_relu", GRU(reset_after=False) "gru_reset_before"; options: the variant
    keywords (cells/variants.py) of the layer."""
    if nonlinearity != "tanh":
        kind = variant(kind, nonlinearity=nonlinearity).kind
    if not reset_after and not options:
        kind = variant(kind, reset_after=False).kind
    elif not reset_after:
        options = dict(options, reset_after=False)
    return Case(kind, input_size, hidden_size, layers, bidirectional, batch_first,
                proj_size=proj_size, seq_len=seq_len, batch=batch, seed=seed, dtype=dtype,
                lengths=lengths, options=options or None)


@dataclass
class Report:
    sections: list = field(default_factory=list)     # (title, [lines])
    checks: list = field(default_factory=list)       # (what, expected_equal, max_diff, ok)

    def add(self, title, lines):
        self.sections.append((title, lines))

    def check(self, what, a, b, expect_equal=True, tol=None):
        """Compare two arrays (the error measure of rnnlab.tools.cases); record and return
        a one-line verdict."""
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            diff, equal = float("inf"), False
        else:
            diff = error(a, b, "float64")
            equal = diff <= (tol if tol is not None else TOL["float64"])
        ok = equal == expect_equal
        self.checks.append((what, expect_equal, diff, ok))
        verdict = "equal" if equal else "NOT equal"
        note = "" if ok else "   <-- unexpected!"
        return f"{verdict:9s} (max diff {diff:.1e}){note}"

    def claim(self, what, holds):
        """Record a yes/no claim checked on the numbers; returns "[holds]" or a warning."""
        holds = bool(holds)
        self.checks.append((what, True, 0.0 if holds else float("nan"), holds))
        return "[holds]" if holds else "[DOES NOT HOLD]   <-- unexpected!"

    @property
    def ok(self):
        return all(c[3] for c in self.checks)

    def text(self, width=100):
        out = []
        for title, lines in self.sections:
            out.append("")
            out.append(f"== {title} " + "=" * max(0, width - len(title) - 4))
            out.extend(lines)
        out.append("")
        bad = [c for c in self.checks if not c[3]]
        out.append(f"{len(self.checks)} checks on the numbers, {len(bad)} unexpected.")
        return "\n".join(out)


def fmt(v, n=3):
    """A short vector as text, at most n entries shown."""
    v = np.atleast_1d(np.asarray(v, dtype=np.float64))
    body = " ".join(f"{e:+.3f}" for e in v[:n])
    return "[" + body + (" ..." if v.size > n else "") + "]"


def build(cfg):
    """The layer of the configuration and a random example (eval mode)."""
    layer = cfg.make_layer().eval()
    rng = np.random.default_rng(cfg.seed + 1)
    D = 2 if cfg.bidirectional else 1
    x = rng.standard_normal((cfg.seq_len, cfg.batch, cfg.input_size)).astype(cfg.dtype)
    h0 = rng.standard_normal((cfg.num_layers * D, cfg.batch, cfg.H_out)).astype(cfg.dtype)
    c0 = (rng.standard_normal((cfg.num_layers * D, cfg.batch, cfg.hidden_size))
          .astype(cfg.dtype) if layer.family.has_cell_state else None)
    return layer, x, h0, c0


def _user(cfg, x):
    """time-major -> the layout the user passes (batch_first)."""
    return np.ascontiguousarray(x.transpose(1, 0, 2)) if cfg.batch_first else x


def explain(cfg, with_torch=False, png=None):
    """Build the whole report for one configuration."""
    if cfg.lengths is not None:
        if len(cfg.lengths) != cfg.batch:
            cfg.batch = len(cfg.lengths)
        cfg.seq_len = max(cfg.seq_len, max(cfg.lengths))
    layer, x, h0, c0 = build(cfg)
    has_c = layer.family.has_cell_state
    rep = Report()
    _section_equations(rep, cfg, layer)
    hx = (h0, c0) if has_c else h0
    with enable_grad():                               # eval mode, recorded for the gradients
        out, state = layer(_user(cfg, x), hx, lengths=cfg.lengths)
    out_tm = out.transpose(1, 0, 2) if cfg.batch_first else out
    h_n, c_n = state if has_c else (state, None)
    n = min(cfg.batch, HAND_CHECKED)                  # the plain loop is slow: a few sequences
    ref = R.run(layer, x[:, :n], h0[:, :n], None if c0 is None else c0[:, :n],
                None if cfg.lengths is None else cfg.lengths[:n])
    tol = TOL[cfg.dtype]
    _section_steps(rep, cfg, layer, x, h0, ref, out_tm[:, :n], tol)
    _section_map(rep, cfg, out, h_n, tol)
    _section_cell_loop(rep, cfg, x, tol)
    _section_stacking(rep, cfg, layer, x, ref, out_tm[:, :n], h_n[:, :n],
                      None if c_n is None else c_n[:, :n], tol)
    _section_gradients(rep, cfg, layer, out)
    if with_torch:
        from .explain_extras import section_torch
        section_torch(rep, cfg, layer, x, h0, c0, out, h_n, c_n)
    if png:
        from .explain_extras import figure
        figure(cfg, layer, ref, png)
        rep.add("Figure", [f"hidden states{' and gates' if layer.family.gate_names else ''} over "
                           f"time per layer and direction written to {png}"])
    return rep


def _section_equations(rep, cfg, layer):
    fam = layer.family
    blocks = " | ".join(fam.gate_names)
    D = layer.num_directions
    H, H_out = cfg.hidden_size, cfg.proj_size or cfg.hidden_size
    lines = textwrap.wrap(repr(layer), 98, subsequent_indent="    ", break_long_words=False)
    lines += [f"dtype {cfg.dtype}, seed {cfg.seed}, eval mode", "",
             "One step of layer k, direction d (s = sigmoid, * = elementwise product,",
             "x = the layer's input at step t, h = its previous hidden state):"]
    lines += ["  " + e for e in fam.equations]
    if cfg.proj_size:
        lines.append(f"  with proj_size={cfg.proj_size}: h' = (o * tanh(c')) W_hr^T")
    lines += _letter_map(cfg)
    lines += ["", "Parameters (torch names and shapes" +
              (f"; row blocks of the gate matrices: {blocks})" if blocks else ")")]
    small = sum(p.size for p in layer.parameters()) <= 120
    for name, p in layer.named_parameters():
        if small:                                   # small enough to print the numbers
            rows = p.reshape(p.shape[0], -1) if p.ndim == 2 else p[None]
            for r, row in enumerate(rows):
                head = f"  {name:22s} {str(p.shape):9s}" if r == 0 else " " * 34
                lines.append(head + fmt(row, 6))
        else:
            lines.append(f"  {name:22s} {str(p.shape):12s}")
    L, N = cfg.seq_len, cfg.batch
    xin = f"({N}, {L}, {cfg.input_size})  (N, L, H_in)" if cfg.batch_first else \
        f"({L}, {N}, {cfg.input_size})  (L, N, H_in)"
    outs = f"({N}, {L}, {D * H_out})" if cfg.batch_first else f"({L}, {N}, {D * H_out})"
    LD = cfg.num_layers * D
    lines += ["", f"Shapes (L = {L} step{'s' * (L != 1)}, N = {N} sequence{'s' * (N != 1)}, "
                  f"D = {D} direction{'s' * (D != 1)}, "
                  f"H_out = {H_out}):",
              f"  input   {xin}",
              f"  h0      ({LD}, {N}, {H_out})  (D * num_layers, N, H_out); missing = zeros"]
    if fam.has_cell_state:
        lines.append(f"  c0      ({LD}, {N}, {H})  (D * num_layers, N, H): hidden width, even "
                     "with proj_size")
    lines += [f"  output  {outs}  the LAST layer's h at every step"
              + (" (forward half, then backward half)" if D == 2 else ""),
              f"  h_n     ({LD}, {N}, {H_out})  EVERY layer's h at its last step; row = "
              "layer * D + direction"]
    if fam.has_cell_state:
        lines.append(f"  c_n     ({LD}, {N}, {H})")
    if cfg.lengths is not None:
        lines.append(f"  lengths {cfg.lengths}: each sequence stops at its own length; output "
                     "is 0 past it")
    rep.add("What the layer computes", lines)


def _letter_map(cfg):
    """Which rows of which torch parameter each letter of the equations is."""
    H = cfg.hidden_size
    gates = by_kind(cfg.kind).gate_names
    star = "*" if gates else ""
    lines = ["", "Letters -> torch parameters (k = layer" +
             ("; add _reverse for the backward direction):" if cfg.bidirectional else "):"),
             f"  W_ih{star} -> weight_ih_l{{k}}   W_hh{star} -> weight_hh_l{{k}}   "
             f"b_ih{star} -> bias_ih_l{{k}}   b_hh{star} -> bias_hh_l{{k}}"]
    if gates:
        lines = [line.replace("W_ih*", "W_i*").replace("W_hh*", "W_h*")
                 .replace("b_ih*", "b_i*").replace("b_hh*", "b_h*") for line in lines]
        lines.append("  gate rows: " + ", ".join(f"{g} [{j * H}:{(j + 1) * H}]"
                                               for j, g in enumerate(gates)))
    if cfg.proj_size:
        lines.append(f"  W_hr -> weight_hr_l{{k}}, shape ({cfg.proj_size}, {H})")
    return lines


def _section_steps(rep, cfg, layer, x, h0, ref, out_tm, tol):
    D = layer.num_directions
    gate_names = layer.family.gate_names
    lines = ["Each step computed by hand from the equations (rnnlab.reference), sequence by",
             "sequence, layer by layer, from a random h0"
             + (" and c0" if layer.family.has_cell_state else "")
             + "; the last layer",
             "is compared with the layer's output.", ""]
    shown = range(min(cfg.batch, 2))
    for i in shown:
        for k in range(cfg.num_layers):
            for d in range(D):
                lines.append(f"sequence {i}, layer {k}, {'backward' if d else 'forward'} "
                             f"direction, h0[{k * D + d}, {i}] = {fmt(h0[k * D + d, i])}"
                             + (" (last step -> 0)" if d else ""))
                records = ref["trace"][k][d][i]
                half = SHOWN_STEPS // 2
                for j, (t, _, _, _, _, h, c, gates) in enumerate(records):
                    if len(records) > SHOWN_STEPS and half <= j < len(records) - half:
                        if j == half:
                            lines.append(f"  ... {len(records) - SHOWN_STEPS} steps not shown")
                        continue
                    inp = fmt(x[t, i]) if k == 0 else "(layer below)"
                    row = f"  t={t:<3d} {'x_t' if k == 0 else 'in '} {inp:28s} h {fmt(h)}"
                    if c is not None:
                        row += f"  c {fmt(c, 2)}"
                    lines.append(row)
                    if gate_names:
                        lines.append(" " * 8 + "  ".join(f"{g} {fmt(gates[g], 2)}"
                                                         for g in gate_names))
    checked = min(cfg.batch, HAND_CHECKED)
    if cfg.batch > 2:
        lines.append(f"(sequences 2..{cfg.batch - 1} not shown; the hand loop below checks "
                     f"sequences 0..{checked - 1}"
                     + (f", not {checked}..{cfg.batch - 1})" if cfg.batch > checked else ")"))
    lines.append("")
    lines.append("hand loop vs layer output:  " +
                 rep.check("hand-written loop == layer output", ref["output"], out_tm, tol=tol))
    rep.add("Step by step", lines)


def _section_map(rep, cfg, out, h_n, tol):
    D, L = (2 if cfg.bidirectional else 1), cfg.num_layers
    H = cfg.proj_size or cfg.hidden_size
    N = cfg.batch
    hv = h_n.reshape(L, D, N, H)
    o = out.transpose(1, 0, 2) if cfg.batch_first else out        # (L, N, D*H) for indexing
    t_ = (lambda s: f"output[:, {s}") if cfg.batch_first else (lambda s: f"output[{s}, :")
    lines = [f"View h_n as (num_layers, D, N, H_out) = ({L}, {D}, {N}, {H}): "
             "hv = h_n.reshape" f"({L}, {D}, {N}, {H})",
             "output holds only the last layer; the inner layers' final states are only in h_n.",
             ""]
    fw = slice(0, H)
    def row(expr, name, a, b, why, expect_equal=True):
        lines.append(f"  {expr:42s} {why}")
        lines.append(" " * 46 + rep.check(name, a, b, expect_equal=expect_equal, tol=tol))

    if cfg.lengths is None:
        row(f"hv[-1, 0] == {t_('-1')}, :{H}]", "forward h_n == output at last step",
            hv[-1, 0], o[-1, :, fw], "forward final state = LAST step")
        if D == 2:
            row(f"hv[-1, 1] == {t_('0')}, {H}:]", "backward h_n == output at step 0",
                hv[-1, 1], o[0, :, H:], "backward final state = FIRST step")
            row(f"hv[-1, 1] vs {t_('-1')}, {H}:]",
                "backward h_n vs output at last step (expected to differ)", hv[-1, 1],
                o[-1, :, H:], "the tempting slice: backward's first step", expect_equal=False)
    else:
        lens = list(cfg.lengths)
        own = np.stack([o[n - 1, i, fw] for i, n in enumerate(lens)])
        own_expr = (f"output[i, len_i - 1, :{H}]" if cfg.batch_first
                    else f"output[len_i - 1, i, :{H}]")
        row(f"hv[-1, 0, i] == {own_expr}", "forward h_n == output at own "
            "last step", hv[-1, 0], own, "forward: each sequence's OWN last step")
        if any(n < o.shape[0] for n in lens):
            row(f"hv[-1, 0] vs {t_('-1')}, :{H}]", "forward h_n vs padded last step (expected "
                "to differ)", hv[-1, 0], o[-1, :, fw], "the padded last step (zeros there)",
                expect_equal=False)
        if D == 2:
            row(f"hv[-1, 1] == {t_('0')}, {H}:]", "backward h_n == output at step 0",
                hv[-1, 1], o[0, :, H:], "backward: from own last element to step 0")
    if L > 1:
        lines.append(f"  hv[0..{L - 2}]: the inner layers' final states; output never contains them.")
    rep.add("output <-> h_n", lines)


def _section_cell_loop(rep, cfg, x, tol):
    one = make_layer(cfg.kind, cfg.input_size, cfg.hidden_size, dtype=cfg.dtype, seed=cfg.seed,
                     **(cfg.options or {}))
    cell = make_cell(cfg.kind, cfg.input_size, cfg.hidden_size, **(cfg.options or {}),
                     dtype=cfg.dtype,
                     seed=cfg.seed + 100)
    out, _ = one(x)
    layer_cls, cell_cls = type(one), type(cell)

    def loop():
        with no_grad():
            return run_cells(cell, x)[0]
    lines = [f"{cell_cls.__name__} run in a Python loop vs {layer_cls.__name__}"
             f"(num_layers=1) on the same input:"]
    lines.append("  independently initialised: " +
                 rep.check("cell loop vs layer, independent init (expected to differ)",
                           loop(), out, expect_equal=False, tol=tol))
    cell.load_state_dict({k[:-3]: v for k, v in one.state_dict().items()})
    lines.append("  weights copied from layer:  " +
                 rep.check("cell loop == layer with copied weights", loop(), out, tol=tol))
    lines += ["Why: each module draws its own random weights at construction. The layer IS the",
              "cell run over time; copy the weights (weight_ih_l0 -> weight_ih, ...) and every",
              "step matches."]
    rep.add("Cell loop vs layer", lines)


def _section_stacking(rep, cfg, layer, x, ref, out_tm, h_n, c_n, tol):
    D = layer.num_directions
    H_out = cfg.proj_size or cfg.hidden_size
    lines = ["Layer k+1's input at step t is layer k's OUTPUT at step t (both directions",
             "concatenated, after dropout in training mode), never x: torch's docstring",
             "pseudo-code feeds x to every layer, which is wrong for num_layers > 1.",
             "The correct per-layer loop (rnnlab.reference.run), checked:"]
    lines.append("  output: " + rep.check("per-layer loop output == layer", ref["output"], out_tm, tol=tol))
    lines.append("  h_n:    " + rep.check("per-layer loop h_n == layer", ref["h_n"], h_n, tol=tol))
    if c_n is not None:
        lines.append("  c_n:    " + rep.check("per-layer loop c_n == layer", ref["c_n"], c_n, tol=tol))
    if cfg.num_layers > 1:
        if cfg.input_size == D * H_out:
            wrong = _docstring_loop(cfg, layer, x)
            lines.append("  docstring's version (x into every layer): " +
                         rep.check("docstring pseudo-code (expected to differ)", wrong, out_tm,
                                   expect_equal=False, tol=tol))
        else:
            lines.append(f"  (the docstring's version cannot even run here: layer 1 expects "
                         f"{D * H_out} features, x has {cfg.input_size})")
    rep.add("Stacking layers", lines)


def _section_gradients(rep, cfg, layer, out):
    from ..columns import gradient_norms
    d = np.zeros(out.shape, dtype=out.dtype)
    last = [n - 1 for n in cfg.lengths] if cfg.lengths is not None else [cfg.seq_len - 1] * cfg.batch
    for i, t in enumerate(last):                    # loss = sum of each sequence's last output
        if cfg.batch_first:
            d[i, t] = 1.0
        else:
            d[t, i] = 1.0
    norms = gradient_norms(layer, d)[0][0][:last[0] + 1, 0]   # layer 0, forward, sequence 0
    others = []
    if cfg.num_layers > 1 or layer.num_directions > 1 or cfg.batch > 1:
        others = [f"(shown: layer 0, forward direction, sequence 0 of {cfg.batch}; "
                  "rnnlab.columns.gradient_norms",
                  " gives every layer, direction and sequence)"]
    lines = ["loss = sum of the output at each sequence's last step; |dloss/dh_t| reaching",
             "layer 0's forward direction at every step (sequence 0), as BPTT carries it back",
             "through the products of Jacobians dh_t/dh_(t-1) (W_hh^T times the gate and",
             "activation derivatives):"] + others
    shown = range(len(norms)) if len(norms) <= 12 else list(range(6)) + list(range(len(norms) - 6, len(norms)))
    lines.append("  " + "  ".join(f"t={t}: {norms[t]:.2e}" for t in list(shown)[:6]))
    if len(norms) > 6:
        lines.append("  " + "  ".join(f"t={t}: {norms[t]:.2e}" for t in list(shown)[6:]))
    lines += ["Shrinking towards t=0: vanishing gradients; growing: exploding (clip by global",
              "norm in the trainer). rnnlab.columns.gradient_norms(layer, d_output) gives these."]
    rep.add("Gradients through time", lines)


def _docstring_loop(cfg, layer, x):
    """The wrong loop: every layer reads x."""
    out = None
    for k in range(cfg.num_layers):
        sd = {n.replace(f"_l{k}", "_l0"): v for n, v in layer.state_dict().items() if f"_l{k}" in n}
        single = make_layer(cfg.kind, x.shape[2], cfg.hidden_size, **(cfg.options or {}),
                            dtype=cfg.dtype,
                            **cfg.layer_kwargs(input_layout=False, num_layers=1))
        single.load_state_dict(sd)
        out, _ = single(x)
    return out
