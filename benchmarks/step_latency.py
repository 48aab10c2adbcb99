"""Batch-1 step latency: one time step through a layer, as a streaming service runs it.

    python benchmarks/step_latency.py [--kinds gru,lstm,rnn] [--hidden 64,128,256]
                                      [--layers 1,2] [--rounds 5] [--steps 2000]

For every configuration each framework runs in its own fresh process (rnnlab
``layer.step`` in eval mode, torch's layer on a length-1 sequence under no_grad,
onnxruntime on rnnlab's exported graph with L = 1), the frameworks alternating round by
round; inside a process 200 warm-up steps are excluded and the median per-step time of
``--steps`` steps is reported. The table gives the median over rounds and the spread
(min-max over rounds), with the thread count (2 unless --threads) for all three and the
BLAS kernel NumPy uses. Nothing here is asserted: timings are recorded in BENCHMARKS.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

WORKER = r"""
import json, os, sys, time
import numpy as np
fw, kind, H, L, steps, threads, onnx_path = sys.argv[1:8]
H, L, steps, threads = int(H), int(L), int(steps), int(threads)
rng = np.random.default_rng(0)
x = rng.standard_normal((steps + 200, 1, H)).astype(np.float32)
times = []
if fw == "rnnlab":
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    import rnnlab
    m = rnnlab.nn.make_layer(kind, H, H, num_layers=L, seed=0).eval()
    state = None
    for t in range(steps + 200):
        t0 = time.perf_counter(); y, state = m.step(x[t], state); t1 = time.perf_counter()
        times.append(t1 - t0)
elif fw == "torch":
    import torch
    torch.set_num_threads(threads)
    m = getattr(torch.nn, {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}[kind])(H, H, num_layers=L).eval()
    state = None
    xt = torch.from_numpy(x)
    with torch.no_grad():
        for t in range(steps + 200):
            t0 = time.perf_counter(); y, state = m(xt[t:t + 1], state); t1 = time.perf_counter()
            times.append(t1 - t0)
else:
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    s = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    h = np.zeros((L, 1, H), np.float32); c = np.zeros((L, 1, H), np.float32)
    names = [i.name for i in s.get_inputs()]
    for t in range(steps + 200):
        feeds = {"input": x[t:t + 1], "h0": h}
        if "c0" in names: feeds["c0"] = c
        t0 = time.perf_counter(); outs = s.run(None, feeds); t1 = time.perf_counter()
        h = outs[1]
        if "c0" in names: c = outs[2]
        times.append(t1 - t0)
print(json.dumps(sorted(times[200:])[len(times[200:]) // 2]))
"""


def blas():
    try:
        from threadpoolctl import threadpool_info
        return "; ".join(f"{i['internal_api']} {i['version']} {i.get('architecture')}"
                         for i in threadpool_info() if i["user_api"] == "blas")
    except ImportError:
        return "threadpoolctl not installed"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kinds", default="gru,lstm,rnn")
    p.add_argument("--hidden", default="64,128,256")
    p.add_argument("--layers", default="1,2")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frameworks", default="rnnlab,torch,onnxruntime")
    args = p.parse_args()
    import rnnlab
    fws = args.frameworks.split(",")
    print(f"batch 1, float32, {args.threads} threads each; numpy BLAS: {blas()}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    print(f"{'config':16s}" + "".join(f"{fw:>24s}" for fw in fws) + "   rnnlab vs torch / ort")
    tmp = tempfile.mkdtemp()
    for kind in args.kinds.split(","):
        for L in map(int, args.layers.split(",")):
            for H in map(int, args.hidden.split(",")):
                onnx_path = os.path.join(tmp, f"{kind}{L}{H}.onnx")
                if "onnxruntime" in fws:
                    rnnlab.export_onnx(rnnlab.nn.make_layer(kind, H, H, num_layers=L, seed=0),
                                       onnx_path)
                res = {fw: [] for fw in fws}
                for _ in range(args.rounds):
                    for fw in fws:
                        out = subprocess.run([sys.executable, "-c", WORKER, fw, kind, str(H),
                                              str(L), str(args.steps), str(args.threads),
                                              onnx_path], capture_output=True, text=True,
                                             check=True)
                        res[fw].append(json.loads(out.stdout) * 1e6)
                med = {fw: statistics.median(v) for fw, v in res.items()}
                cells = "".join(f"{med[fw]:8.1f} us ({min(res[fw]):.0f}-{max(res[fw]):.0f})"
                                .rjust(24) for fw in fws)
                ratio = ""
                if "torch" in med:
                    ratio += f"   {med['torch'] / med['rnnlab']:.2f}x"
                if "onnxruntime" in med:
                    ratio += f" / {med['onnxruntime'] / med['rnnlab']:.2f}x"
                print(f"{kind} L{L} H{H}".ljust(16) + cells + ratio, flush=True)


if __name__ == "__main__":
    main()
