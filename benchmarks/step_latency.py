"""Batch-1 step latency of rnnlab, torch and onnxruntime (the step table of rnnlab bench).

    python benchmarks/step_latency.py [--kinds gru,lstm,rnn] [--step-hidden 64,128,256]
                                      [--step-layers 1,2] [--rounds 3]

Each framework in its own fresh process per configuration, alternated round by round,
200 warm-up steps excluded, the median of 1500 steps per process; median and (min-max)
over rounds; the same threads everywhere. It is ``rnnlab bench --no-sequences``.
"""
import sys

from rnnlab.tools.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "--no-sequences"] + sys.argv[1:]))
