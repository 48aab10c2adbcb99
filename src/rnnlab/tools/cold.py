"""``rnnlab bench --cold-start``: the first calls after installing, when numba's cache is
empty, against the next process's, timed in fresh processes."""
import json
import os
import subprocess
import sys
import tempfile

COLD_CODE = """
import json, sys, time, warnings
t0 = time.perf_counter()
import numpy as np
import rnnlab
from rnnlab.nn import make_layer
t1 = time.perf_counter()
out = {"import": t1 - t0}
warnings.simplefilter("ignore")
for kind in sys.argv[1].split(","):
    t = time.perf_counter()
    layer = make_layer(kind, 8, 16, seed=0)
    layer(np.zeros((5, 4, 8), np.float32))
    out[kind] = time.perf_counter() - t
print(json.dumps(out))
"""


def cold_start(kinds=("gru", "lstm")):
    """Seconds to import rnnlab and make the first call of each kind (a 5-step batch) in
    a fresh process whose numba cache directory is empty (the first use after
    installing), then in a second process with that cache filled: (cold, cached) dicts."""
    runs = []
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", COLD_CODE, ",".join(kinds)],
                                 capture_output=True, text=True, env=env)
            if out.returncode != 0:
                raise RuntimeError(f"cold-start worker failed: {out.stderr.strip()[-300:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return runs[0], runs[1]


def format_cold(cold, cached):
    def line(r):
        calls = sum(v for k, v in r.items() if k != "import")
        return (f"import {r['import']:.2f} s + first calls "
                + " + ".join(f"{k} {v:.2f}" for k, v in r.items() if k != "import")
                + f" = {r['import'] + calls:.1f} s")
    return [f"cold start, numba's cache empty (first use after install): {line(cold)}",
            f"next process, cache filled (or after `rnnlab warmup`): {line(cached)}"]
