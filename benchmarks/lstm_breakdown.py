"""Where one LSTM inference call spends its time, beside torch on the same products.

    python benchmarks/lstm_breakdown.py                  # (100, 64, 256, 256), 2 threads
    python benchmarks/lstm_breakdown.py 200,128,512,512 --threads 2

rnnlab's call is split the way its driver runs it (sequence/driver.py, sizes above
tuning.COMPILED_LOOP_MAX): one input projection x W_ih^T for all steps, then per step the
recurrent product h W_hh^T (OpenBLAS) and the compiled gates. Each part is timed alone
(median of --reps), the products again inside a loop that also runs the gates (as in the
call: the gates' 0.25 MB per step push W_hh out of cache), and the rest of the call is
what the parts leave. torch: its fused call, and the same two products with torch.mm.
Prints GFLOP/s for each.
"""
import argparse
import time

import numpy as np


def median_ms(f, reps):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("size", nargs="?", default="100,64,256,256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=15)
    a = ap.parse_args()
    T, N, I, H = map(int, a.size.split(","))
    from threadpoolctl import threadpool_limits
    import rnnlab
    from rnnlab.cells import FAMILIES
    from rnnlab.sequence import kernels
    threadpool_limits(a.threads)
    fam = FAMILIES["lstm"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, N, I)).astype(np.float32)
    m = rnnlab.LSTM(I, H).eval()
    w_ih_t, w_hh_t = (np.ascontiguousarray(w.T) for w in (m.weight_ih_l0, m.weight_hh_l0))
    bias = (m.bias_ih_l0 + m.bias_hh_l0).astype(np.float32)
    step, _, _ = kernels.cell_steps(fam, np.float32, bias, np.zeros(0, np.float32))
    gx = np.empty((T * N, 4 * H), np.float32)
    h, c = (rng.standard_normal((N, H)).astype(np.float32) for _ in range(2))
    gh, hn = np.empty((N, 4 * H), np.float32), np.empty((N, H), np.float32)
    store = np.empty((N, fam.store * H), np.float32)
    gxs = gx.reshape(T, N, 4 * H)

    def products():
        for _ in range(T):
            np.dot(h, w_hh_t, out=gh)

    def gates():
        for t in range(T):
            step(gxs[t], gh, h, c, hn, store)

    def products_with_gates():
        for t in range(T):
            np.dot(h, w_hh_t, out=gh)
            step(gxs[t], gh, h, c, hn, store)
    with rnnlab.no_grad():
        full = median_ms(lambda: m(x), a.reps)
    proj = median_ms(lambda: np.dot(x.reshape(-1, I), w_ih_t, out=gx), a.reps)
    prod = median_ms(products, a.reps)
    gate = median_ms(gates, a.reps)
    loop = median_ms(products_with_gates, a.reps)
    import torch
    torch.set_num_threads(a.threads)
    tl = torch.nn.LSTM(I, H)
    tx, th, tw, twi = (torch.from_numpy(v) for v in (x, h, w_hh_t, w_ih_t))
    tg, tgx = torch.empty(N, 4 * H), torch.empty(T * N, 4 * H)
    with torch.no_grad():
        tfull = median_ms(lambda: tl(tx), a.reps)
        tproj = median_ms(lambda: torch.mm(tx.reshape(-1, I), twi, out=tgx), a.reps)

        def tproducts():
            for _ in range(T):
                torch.mm(th, tw, out=tg)
        tprod = median_ms(tproducts, a.reps)
    gf_proj, gf_rec = 2 * T * N * 4 * H * I / 1e9, 2 * T * N * 4 * H * H / 1e9
    rate = lambda gf, ms: f"{gf / ms * 1e3:5.0f} GF/s"  # noqa: E731
    print(f"LSTM (T, N, I, H) = ({T}, {N}, {I}, {H}), {a.threads} threads, float32, "
          f"median of {a.reps}; {gf_proj + gf_rec:.2f} GFLOP per call")
    print(f"rnnlab call                       {full:7.1f} ms {rate(gf_proj + gf_rec, full)}")
    print(f"  input projection (one product)  {proj:7.1f} ms {rate(gf_proj, proj)}")
    print(f"  {T} recurrent products, alone   {prod:7.1f} ms {rate(gf_rec, prod)}")
    print(f"  {T} compiled gate steps, alone  {gate:7.1f} ms  ({gate / T * 1e3:.0f} us per step)")
    print(f"  products + gates as in the call {loop:7.1f} ms  (products in the loop: "
          f"{loop - gate:.1f} ms, {rate(gf_rec, loop - gate)})")
    print(f"  rest of the call (Python, copies, weights' transposes) {full - proj - loop:5.1f} ms")
    print(f"torch call (fused)                {tfull:7.1f} ms {rate(gf_proj + gf_rec, tfull)}")
    print(f"  input projection (torch.mm)     {tproj:7.1f} ms {rate(gf_proj, tproj)}")
    print(f"  {T} recurrent products (torch.mm) {tprod:6.1f} ms {rate(gf_rec, tprod)}")


if __name__ == "__main__":
    main()
