"""Where one large LSTM inference call spends its time, against the cores' arithmetic limit
and beside torch's call.

    python benchmarks/lstm_breakdown.py                  # (100, 64, 256, 256)
    python benchmarks/lstm_breakdown.py 200,128,512,512 --blocks 6
    python benchmarks/lstm_breakdown.py 100,16,128,128 --train

A float32 call of N >= 3 rows runs on the compiled loop that projects the input step by
step (sequence/_loops_in.SEQUENCE_IN), its rows in two halves, one per thread, each half
running its own time loop: per step, X = bias + x_t W_ih^T and A = X + h W_hh^T in 8 x 32
register tiles from W^T in panels (sequence/_tiles.py), then the units. Timed here, one
process, medians:

- the cores' multiply-add peak: the 8 x 32 tile on operands that stay in L1, one thread;
- one half's work on one thread, its parts alone: the T steps' two products as the loop
  runs them (_tiles.product_from on the half's rows), and the T steps' units (the
  compiled sigmoid and tanh of sequence/_compiled.py, as the loop computes them);
- the loop itself on one thread, both halves one after the other (role 0);
- the whole call on two threads (rnnlab.set_num_threads(2)) and torch's fused call
  (torch.set_num_threads(2)), alternated in blocks of --reps calls.

The limit printed is the products' multiply-adds at the measured peak on two cores plus
the units at their measured rate on two cores: no call on these two cores computes this
LSTM's arithmetic in less (torch's oneDNN does the same multiply-adds). Needs numba (the
`fast` extra) and torch.

--train: a training step as the bench times it (forward, then backward from a random
gradient on every output), rnnlab's against torch's, alternated, and its limit: three
times the forward's multiply-adds (backward: dh W_hh, dx, dW_ih, dW_hh) at the peak, and
the units forward and back (sequence/cells' lstm.unit_back compiled alike) at their
measured rates, on two cores.
"""
import argparse
import time

import numpy as np


def median_ms(f, reps):
    """The median of ``reps`` timed calls of f after one untimed, in ms."""
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def compiled_parts():
    """(peak, products, units, unit_backs): njit loops over the tiles and the scalar units
    (units: primitives.lstm_units, this directory's)."""
    from numba import njit
    from primitives import lstm_units
    from rnnlab.cells import lstm
    from rnnlab.sequence._tiles import product_from
    opts = dict(error_model="numpy", fastmath={"contract"}, cache=False, nogil=True)

    @njit(**opts)
    def peak(c, a, b, reps):
        for _ in range(reps):
            product_from(c, c, a, b)

    @njit(**opts)
    def products(X, BX, A, x, h, w_ih_p, w_hh_p, T):
        for t in range(T):
            product_from(X, BX, x[t], w_ih_p)               # bias + x_t W_ih^T
            product_from(A, X, h, w_hh_p)                   # + h W_hh^T

    back = njit(**opts)(lstm.unit_back)

    @njit(**opts)                                           # (written out as lstm_units:
    def unit_backs(A, c, u, T):                             # LLVM vectorises it)
        R, H = c.shape
        for _ in range(T):
            for n in range(R):
                a, cp, un = A[n], c[n], u[n]
                for j in range(H):
                    d = back(un[j], cp[j], a[j], a[H + j], a[2 * H + j], a[3 * H + j],
                             a[j] * 0.5, cp[j])
                    un[j] = d[0] + d[1] + d[2] + d[3] + d[4]
    return peak, products, lstm_units(**opts), unit_backs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("size", nargs="?", default="100,64,256,256", help="T,N,I,H")
    ap.add_argument("--reps", type=int, default=5, help="calls in a block")
    ap.add_argument("--blocks", type=int, default=10, help="alternated blocks of calls")
    ap.add_argument("--train", action="store_true", help="a training step (see above)")
    a = ap.parse_args()
    T, N, I, H = map(int, a.size.split(","))
    import torch
    from threadpoolctl import threadpool_limits

    import rnnlab
    from rnnlab.cells import FAMILIES
    from rnnlab.sequence import kernels
    from rnnlab.sequence.linalg import in_panels
    from rnnlab.sequence.pair_step import BOX
    f32, GH = np.float32, 4 * H
    rng = np.random.default_rng(0)
    tl = torch.nn.LSTM(I, H)
    m = rnnlab.LSTM(I, H).eval()
    m.load_state_dict({k: v.detach().numpy() for k, v in tl.state_dict().items()})
    x = rng.standard_normal((T, N, I)).astype(f32)
    tx = torch.from_numpy(x)
    R = 2 * ((N + 2) // 4)                                  # the first half's rows
    w_ih_p = in_panels(m.weight_ih_l0.reshape(4, H, I), 0, H)
    w_hh_p = in_panels(m.weight_hh_l0.reshape(4, H, H), 0, H)
    peak, products, units, unit_backs = compiled_parts()

    # the multiply-add peak: 32 rows x 32 columns over k = 128, 16 KB + 16 KB, in L1
    pc, pa = np.zeros((32, 32), f32), rng.standard_normal((32, 128)).astype(f32)
    pb = rng.standard_normal((128, 32)).astype(f32)
    reps = 2000
    peak(pc, pa, pb, 1)
    t_peak = median_ms(lambda: peak(pc, pa, pb, reps), 7)
    gmac_core = 32 * 32 * 128 * reps / t_peak / 1e6

    X, BX, A = (np.zeros((R, GH), f32) for _ in range(3))
    xh = np.ascontiguousarray(x[:, :R])
    h = (rng.standard_normal((R, H)) * 0.5).astype(f32)
    Au = (rng.standard_normal((R, GH)) * 2).astype(f32)
    c, u = np.zeros((R, H), f32), np.zeros((R, 2 * H), f32)
    with threadpool_limits(1):
        t_units = median_ms(lambda: units(Au, c, u, T), 9)
        unit_ns = t_units * 1e6 / (T * R * H)
        if a.train:
            back_ns = median_ms(lambda: unit_backs(Au, c, u, T), 9) * 1e6 / (T * R * H)
            return train(a, m, tl, x, gmac_core, unit_ns, back_ns)
    with threadpool_limits(1):
        t_prod = median_ms(lambda: products(X, BX, A, xh, h, w_ih_p, w_hh_p, T), 9)
        k = kernels.kernel_for(FAMILIES["lstm"], f32, N, GH, H, False, name="forward_in")
        bias = (m.bias_ih_l0 + m.bias_hh_l0).astype(f32)
        h0, c0 = np.zeros((N, H), f32), np.zeros((N, H), f32)
        ko, kc = np.empty((T, N, H), f32), np.empty((N, H), f32)
        t_loop = median_ms(lambda: k(x, w_ih_p, bias, w_hh_p, np.zeros(0, f32), h0, c0,
                                     False, ko, kc, 0, BOX, 0, 0), 7)

    two_threads()

    def ours():
        with rnnlab.no_grad():
            m(x)

    def theirs():
        with torch.no_grad():
            tl(tx)
    full, tfull, ratio = alternated(ours, theirs, a)

    gmac = T * N * GH * (I + H) / 1e9
    half_gmac = T * R * GH * (I + H) / 1e9
    floor_prod = gmac / (2 * gmac_core) * 1e3               # ms, two cores at the peak
    floor_units = T * N * H * unit_ns / 2 / 1e6
    print(f"LSTM (T, N, I, H) = ({T}, {N}, {I}, {H}) inference, float32: {gmac:.2f} GMAC of "
          f"products, {T * N * H / 1e6:.2f} M units")
    print(f"multiply-add peak, one core (8 x 32 tiles, operands in L1) {gmac_core:6.1f} GMAC/s")
    print(f"one thread, a half's work ({R} rows, {T} steps):")
    print(f"  the two products a step, as the loop runs them {t_prod:8.2f} ms "
          f"({half_gmac / t_prod * 1e3:5.1f} GMAC/s, {half_gmac / t_prod * 1e3 / gmac_core:4.0%}"
          f" of the peak)")
    print(f"  the units (3 sigmoids, 2 tanh a unit)          {t_units:8.2f} ms "
          f"({unit_ns:.2f} ns a unit)")
    print(f"  the loop itself, both halves on one thread     {t_loop:8.2f} ms "
          f"(products + units for both: {2 * (t_prod + t_units):.2f})")
    against_limit(a, "call", floor_prod, floor_units, full, tfull, ratio)


def two_threads():
    """Two threads for everyone: OpenBLAS (threadpoolctl), torch and rnnlab, as the bench."""
    import torch
    from threadpoolctl import threadpool_limits

    import rnnlab
    threadpool_limits(2)
    torch.set_num_threads(2)
    rnnlab.set_num_threads(2)


def against_limit(a, what, floor_prod, floor_units, full, tfull, ratio):
    """The limit on two cores, then rnnlab's and torch's ``what`` against it."""
    limit = floor_prod + floor_units
    ours = f"  rnnlab's {what}, median of {a.blocks} blocks of {a.reps}"
    theirs = f"  torch's {what}{' (oneDNN)' if what == 'call' else ''}, alternated"
    print(f"two threads: the limit (products at the peak {floor_prod:.2f} + units "
          f"{floor_units:.2f})  {limit:8.2f} ms")
    print(f"{ours:<50}{full:8.2f} ms ({full / limit:.2f}x the limit)")
    print(f"{theirs:<50}{tfull:8.2f} ms ({tfull / limit:.2f}x the limit)  torch / rnnlab "
          f"{ratio:.3f} (median of the blocks' ratios)")


def alternated(ours, theirs, a):
    """(ours, theirs, their / our ratio): medians over a.blocks blocks of a.reps calls."""
    ours(), theirs()
    mine, other = [], []
    for _ in range(a.blocks):
        mine.append(median_ms(ours, a.reps))
        other.append(median_ms(theirs, a.reps))
    return (float(np.median(mine)), float(np.median(other)),
            float(np.median(np.array(other) / np.array(mine))))


def train(a, m, tl, x, gmac_core, unit_ns, back_ns):
    """--train: the training step against its limit, beside torch's."""
    import torch
    T, N, _ = x.shape
    GH, I = m.weight_ih_l0.shape
    H = GH // 4
    dy = np.random.default_rng(1).standard_normal((T, N, H)).astype(np.float32)
    tx, tdy = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)
    two_threads()
    m.train()

    def ours():
        m(x)
        m.backward(dy)

    def theirs():
        tl(tx)[0].backward(tdy)
    full, tfull, ratio = alternated(ours, theirs, a)
    gmac = 3 * T * N * GH * (I + H) / 1e9
    floor_prod = gmac / (2 * gmac_core) * 1e3
    floor_units = T * N * H * (unit_ns + back_ns) / 2 / 1e6
    print(f"LSTM (T, N, I, H) = ({T}, {N}, {I}, {H}) training step, float32: {gmac:.2f} GMAC "
          f"of products (forward and backward), {T * N * H / 1e6:.2f} M units")
    print(f"multiply-add peak, one core (8 x 32 tiles, operands in L1) {gmac_core:6.1f} GMAC/s")
    print(f"units, one thread: forward {unit_ns:.2f} ns a unit, back {back_ns:.2f}")
    against_limit(a, "step", floor_prod, floor_units, full, tfull, ratio)


if __name__ == "__main__":
    main()
