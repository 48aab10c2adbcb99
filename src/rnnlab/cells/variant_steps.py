"""The general steps of the variant families (cells/variants.py): ONNX's RNN, GRU and
LSTM equations with every option of the operator, forward beside backward, NumPy only.

    RNN    h' = f(clip(x W_i^T + b_i + h W_h^T + b_h))
    GRU    r = f(clip(a_r)), z = f(clip(a_z))
           n = g(clip(x W_in^T + b_in + r * (h W_hn^T + b_hn)))    reset_after=True
           n = g(clip(x W_in^T + b_in + (r * h) W_hn^T + b_hn))    reset_after=False
           h' = (1 - z) * n + z * h
    LSTM   i = f(clip(a_i + p_i * c)),  f_ = 1 - i (input_forget) or f(clip(a_f + p_f * c))
           g_ = g(clip(a_g)),  c' = f_ * c + i * g_
           o = f(clip(a_o + p_o * c')),  h' = o * h(c')

clip(a) bounds a to [-cell_clip, cell_clip] (no bound without cell_clip); its gradient is
zero where it acts. As in onnxruntime, the clip bounds the gates' pre-activations only:
c' itself, and what h(c') reads, are not clipped. f, g, h are the layer's activations for
this direction (cells/onnx_activations.py). Each ``*_steps(options, w, reverse)`` binds
one direction's weights and returns (step, back, extra) with the contract of
cells/family.py; the store keeps every pre-activation (before the clip) for the
derivatives; extra() gives the gradients the driver's products cannot: {"w_hh": rows past
FOLD, "b_hh": ..., "w_p": ...}.
"""
import numpy as np

from . import onnx_activations as oa
from .activations import sigmoid


class Act:
    """One activation of one direction with the layer's clip: y = act(clip(a))."""

    def __init__(self, spec, clip):
        self.name, self.a, self.b = spec
        self.clip = clip

    def __call__(self, pre, out=None):
        c = self.clip
        if out is not None and self.name in _IN_PLACE:    # no temporaries (most layers)
            x = pre if c is None else np.clip(pre, -c, c, out=out)
            return _IN_PLACE[self.name](x, out=out)
        x = pre if c is None else np.clip(pre, -c, c)
        y = oa.forward(self.name, x, self.a, self.b)
        if out is None:
            return y
        out[...] = y
        return out

    def grad(self, pre, y):
        """d y / d pre (zero where the clip acts)."""
        c = self.clip
        x = pre if c is None or self.name in _IN_PLACE else np.clip(pre, -c, c)
        d = oa.derivative(self.name, x, y, self.a, self.b)   # sigmoid, tanh: from y alone
        if c is not None:
            d *= np.abs(pre) <= c
        return d


_IN_PLACE = {"Sigmoid": sigmoid, "Tanh": np.tanh}


def acts_for(options, reverse):
    """The Act objects of one direction (the second set for a bidirectional layer's
    reverse direction when two were given)."""
    sets = options.activations
    chosen = sets[1] if reverse and len(sets) > 1 else sets[0]
    return [Act(spec, options.cell_clip) for spec in chosen]


def rnn_steps(options, w, reverse):
    (f,) = acts_for(options, reverse)

    def step(gx, gh, h, c, h_new, store):
        np.add(gx, gh, out=store)                           # the pre-activation
        f(store, out=h_new)
        gx[...] = h_new
        return None, (gx, store, h, c)

    def back(dh_new, dc_new, cache, dgx, dgr):
        act, store, _, _ = cache
        np.multiply(dh_new, f.grad(store, act), out=dgx)
        return None, None

    return step, back, dict


def gru_steps(options, w, reverse):
    f, g = acts_for(options, reverse)
    H = w.w_hh.shape[0] // 3
    after = options.reset_after
    w_hn = w.w_hh[2 * H:]
    w_hn_t = None if after else np.ascontiguousarray(w_hn.T)
    b_hn = None if after or w.b_hh is None else w.b_hh[2 * H:]
    acc = {"w_hh": np.zeros((H, H), w.w_hh.dtype), "b_hh": np.zeros(H, w.w_hh.dtype)}

    def step(gx, gh, h, c, h_new, store):
        a = store[:, :3 * H]
        np.add(gx[:, :2 * H], gh[:, :2 * H], out=a[:, :2 * H])
        f(a[:, :2 * H], out=gx[:, :2 * H])                  # r and z: one pass
        r, z = gx[:, :H], gx[:, H:2 * H]
        if after:                                           # r * (h W_hn^T + b_hn)
            store[:, 3 * H:] = gh[:, 2 * H:]
            np.add(gx[:, 2 * H:], r * gh[:, 2 * H:], out=a[:, 2 * H:])
        else:                                               # (r * h) W_hn^T + b_hn
            rh = np.multiply(r, h, out=store[:, 3 * H:])
            np.add(gx[:, 2 * H:], rh @ w_hn_t, out=a[:, 2 * H:])
            if b_hn is not None:
                a[:, 2 * H:] += b_hn
        n = g(a[:, 2 * H:], out=gx[:, 2 * H:])
        np.subtract(h, n, out=h_new)
        h_new *= z
        h_new += n                                          # h' = n + z (h - n)
        return None, (gx, store, h, c)

    def back(dh_new, dc_new, cache, dgx, dgr):
        act, store, h, _ = cache
        r, z, n = act[:, :H], act[:, H:2 * H], act[:, 2 * H:]
        a, kept = store[:, :3 * H], store[:, 3 * H:]
        dan = np.multiply(dh_new, 1.0 - z, out=dgx[:, 2 * H:])   # d(n's pre-activation)
        dan *= g.grad(a[:, 2 * H:], n)
        direct = dh_new * z
        if after:
            dr = dan * kept                                 # kept: h W_hn^T + b_hn
            if dgr is not None:
                np.multiply(dan, r, out=dgr)                # d(h W_hn^T + b_hn)
        else:
            drh = dan @ w_hn
            acc["w_hh"] += dan.T @ kept                     # kept: r * h
            acc["b_hh"] += dan.sum(axis=0)
            dr = drh * h
            direct += drh * r
            if dgr is not None:
                dgr[...] = 0.0                              # done here, not by the driver
        dgx[:, :H] = dr
        np.multiply(dh_new, h - n, out=dgx[:, H:2 * H])    # dz
        dgx[:, :2 * H] *= f.grad(a[:, :2 * H], act[:, :2 * H])   # through r, z: one pass
        return direct, None

    return step, back, (dict if after else (lambda: dict(acc)))


def lstm_steps(options, w, reverse):
    f, g, hact = acts_for(options, reverse)
    hact.clip = None                                        # h(c') is not clipped (onnxruntime)
    H = w.w_hh.shape[0] // 4
    p = getattr(w, "w_p", None) if options.peepholes else None
    pi, po, pf = (None, None, None) if p is None else (p[:H], p[H:2 * H], p[2 * H:])
    coupled = options.input_forget
    acc = {"w_p": None if p is None else np.zeros(3 * H, p.dtype)}

    def step(gx, gh, h, c, h_new, store):
        a = store[:, :4 * H]
        np.add(gx, gh, out=a)
        ai, af, ag, ao = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
        if p is not None:
            ai += pi * c
            if not coupled:
                af += pf * c
        i = f(ai, out=gx[:, :H])
        fg = gx[:, H:2 * H]
        if coupled:
            np.subtract(1.0, i, out=fg)                     # f = 1 - i
        else:
            f(af, out=fg)
        gg = g(ag, out=gx[:, 2 * H:3 * H])
        c_new = store[:, 4 * H:]
        np.multiply(fg, c, out=c_new)
        c_new += i * gg
        if p is not None:
            ao += po * c_new                                # o peeks at the new cell
        o = f(ao, out=gx[:, 3 * H:])
        np.multiply(o, hact(c_new), out=h_new)
        return c_new, (gx, store, h, c)

    def back(dh_new, dc_new, cache, dgx, dgr):
        act, store, _, c = cache
        i, fg, gg, o = act[:, :H], act[:, H:2 * H], act[:, 2 * H:3 * H], act[:, 3 * H:]
        ai, af, ag, ao = (store[:, k * H:(k + 1) * H] for k in range(4))
        c_new = store[:, 4 * H:]
        dai, daf, dag, dao = (dgx[:, k * H:(k + 1) * H] for k in range(4))
        if dh_new is None:                                  # only c' is in the loss
            dc = np.array(dc_new, copy=True)
            dao[...] = 0.0
        else:
            hc = hact(c_new)
            dc = dh_new * o * hact.grad(c_new, hc)
            if dc_new is not None:
                dc += dc_new
            np.multiply(dh_new * hc, f.grad(ao, o), out=dao)
            if p is not None:
                dc += dao * po
        di = dc * gg
        if coupled:
            di -= dc * c                                    # f = 1 - i
            daf[...] = 0.0
        else:
            np.multiply(dc * c, f.grad(af, fg), out=daf)
        np.multiply(di, f.grad(ai, i), out=dai)
        np.multiply(dc * i, g.grad(ag, gg), out=dag)
        dc_prev = dc * fg
        if p is not None:
            dc_prev += dai * pi + daf * pf
            acc["w_p"] += np.concatenate([(dai * c).sum(axis=0), (dao * c_new).sum(axis=0),
                                          (daf * c).sum(axis=0)])
        return None, dc_prev

    return step, back, (dict if p is None else (lambda: dict(acc)))
