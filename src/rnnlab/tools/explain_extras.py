"""The optional parts of ``rnnlab explain``: torch side by side (``--torch``) and the figure
of states and gates over time (``--png``)."""
import numpy as np

from ..cells.activations import RANGES
from .cases import TOL


def section_torch(rep, cfg, layer, x, h0, c0, out, h_n, c_n):
    try:
        import torch
    except ImportError:
        rep.add("torch side by side", ["torch is not installed (pip install 'torch==2.13.0')."])
        return
    from .conformance import torch_forward, torch_module
    if layer.family.torch_class is None:
        opts = layer.family.options_text()
        rep.add("torch side by side", [f"torch has no {layer.family.layer_class or cfg.kind}"
                                       + (f" with {opts}" if opts else "")
                                       + " to compare with."])
        return
    tm = torch_module(cfg)
    cls = type(tm)
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    th = torch.from_numpy(h0)
    hx = (th, torch.from_numpy(c0)) if c0 is not None else th
    with torch.no_grad():
        tout, ts = torch_forward(tm, torch.from_numpy(x.transpose(1, 0, 2) if cfg.batch_first else x), hx, cfg.lengths,
                                 cfg.batch_first)
    th_n, tc_n = ts if c0 is not None else (ts, None)
    tol = TOL[cfg.dtype]
    lines = [f"torch {torch.__version__} {cls.__name__} with the same weights and input:",
             "  output: " + rep.check("torch output", out, tout.numpy(), tol=tol),
             "  h_n:    " + rep.check("torch h_n", h_n, th_n.numpy(), tol=tol)]
    if tc_n is not None:
        lines.append("  c_n:    " + rep.check("torch c_n", c_n, tc_n.numpy(), tol=tol))
    rep.add("torch side by side", lines)


def figure(cfg, layer, ref, path):
    """States (h, and c for a cell-state family) and gates over time for sequence 0, one
    row per layer and direction, over that sequence's own length; each gate on its
    activation's range, a legend per unit."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        raise SystemExit("rnnlab explain --png needs matplotlib: pip install matplotlib") \
            from None
    fam = layer.family
    D = layer.num_directions
    panels = ["h"] + (["c"] if fam.has_cell_state else []) + list(fam.gate_names)
    ranges = dict(zip(fam.gate_names, (RANGES.get(a) for a in fam.gate_activations)))
    fig, axes = plt.subplots(cfg.num_layers * D, len(panels),
                             figsize=(3.2 * len(panels), 2.4 * cfg.num_layers * D), squeeze=False)
    for k in range(cfg.num_layers):
        for d in range(D):
            recs = sorted(ref["trace"][k][d][0], key=lambda r: r.t)
            ts = [r.t for r in recs]
            for ax, what in zip(axes[k * D + d], panels):
                if what == "h":
                    vals = np.stack([r.h for r in recs])
                elif what == "c":
                    vals = np.stack([r.c for r in recs])
                else:
                    vals = np.stack([r.gates[what] for r in recs])
                    if ranges.get(what):
                        lo, hi = ranges[what]
                        ax.set_ylim(lo - 0.05, hi + 0.05)
                for u in range(vals.shape[1]):
                    ax.plot(ts, vals[:, u], marker="o", markersize=3, label=f"unit {u}")
                title = what if what in ("h", "c") else f"gate {what}"
                ax.set_title(f"{title}, layer {k} {'bwd' if d else 'fwd'}", fontsize=9)
                ax.set_xlabel("t (step)", fontsize=8)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                if vals.shape[1] <= 8:
                    ax.legend(fontsize=6, loc="best")
    n0 = ref["lengths"][0]
    fig.suptitle(f"{layer!r}: sequence 0 ({n0} steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
