"""Training step (forward + backward) and inference forward, rnnlab vs torch, float32.

    python benchmarks/bench.py                       # both sizes, all families
    python benchmarks/bench.py --sizes 100,64,256,256 --reps 9

Same as `rnnlab bench`; see rnnlab/bench.py for the method (one process, interleaved,
medians, same thread count).
"""
import sys

from rnnlab.tools.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench"] + sys.argv[1:]))
