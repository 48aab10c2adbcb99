"""The suite catches mistakes: a copy of the package with one equation broken (a sign in a
gate's backward, a dropped bias, a wrong update) must fail the torch-oracle tests, and the
unbroken copy must pass them. Each run is a fresh interpreter importing the copy.

Three NumPy-path mutations run by default (RNNLAB_KERNELS=numpy: no compiling); the others
and those of the compiled scalar units (which compile a family anew) under -m slow."""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("torch")
ROOT = pathlib.Path(__file__).parent.parent
SRC = ROOT / "src" / "rnnlab"

ORACLE = "tests/test_torch_layers.py::test_sizes_of_one_and_larger"    # torch, float64
#: (file under src/rnnlab, text, replacement, what it breaks, the tests that must notice)
NUMPY = [
    ("cells/gru.py", "np.multiply(dan, hn, out=dar)", "np.multiply(dan, -hn, out=dar)",
     "GRU backward: the sign of the reset gate's gradient", ORACLE),
    ("cells/lstm.py", "    dc_prev = dc * f", "    dc_prev = dc * i",
     "LSTM backward: dc_prev through the wrong gate", ORACLE),
    ("sequence/driver.py", "return np.add(b_ih, b_hh), None", "return b_ih.copy(), None",
     "the driver drops the folded part of b_hh", ORACLE),
    ("cells/rnn.py", "np.multiply(dh_new, tanh_grad(cache[0]), out=dgx)",
     "np.multiply(dh_new, 1.0 - cache[0], out=dgx)",
     "RNN backward: the wrong derivative of tanh", ORACLE),
    ("sequence/bptt.py", "dx = dx.reshape(T, N, w.w_ih.shape[1])",
     "dx = dx.reshape(T, N, w.w_ih.shape[1]) * 0.5",
     "BPTT scales the input gradient", ORACLE),
]
COMPILED = [
    ("cells/gru.py", "return r, z, n, n + z * (h - n)", "return r, z, n, n - z * (h - n)",
     "GRU compiled unit: the update's sign", "tests/test_kernels.py"),
    ("cells/lstm.py", "            d * c * (f * (ONE - f)),", "            d * c * f,",
     "LSTM compiled back unit: the forget gate's derivative", "tests/test_kernels.py"),
]


def _run_on_copy(tmp_path, mutation, tests, env):
    """pytest ``tests`` (the repository's own test files) against a copy of the package
    with ``mutation`` ((file, old, new) or None) applied; returns (returncode, output)."""
    root = tmp_path / "src"
    shutil.copytree(SRC, root / "rnnlab", ignore=shutil.ignore_patterns("__pycache__"))
    if mutation is not None:
        path, old, new = mutation
        target = root / "rnnlab" / path
        text = target.read_text()
        assert text.count(old) == 1, f"{path}: the mutated text must stand there once: {old!r}"
        target.write_text(text.replace(old, new))
    environ = dict(os.environ, PYTHONPATH=str(root), **env)
    probe = subprocess.run([sys.executable, "-c", "import rnnlab; print(rnnlab.__file__)"],
                           capture_output=True, text=True, env=environ, cwd=tmp_path)
    assert probe.stdout.strip().startswith(str(root)), probe.stdout + probe.stderr
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                        "--rootdir", str(ROOT), "-m", "not slow",
                        *[str(ROOT / t) for t in tests]],
                       capture_output=True, text=True, env=environ, cwd=tmp_path, timeout=900)
    return r.returncode, r.stdout[-3000:] + r.stderr[-2000:]


def test_the_unbroken_copy_passes(tmp_path):
    code, out = _run_on_copy(tmp_path, None, [ORACLE],
                             {"RNNLAB_KERNELS": "numpy"})
    assert code == 0, out


# a subprocess costs ~3 s (torch's import): one by default, the rest with -m slow
_FAST = 1
CASES = [pytest.param(*m, id=m[3], marks=[pytest.mark.slow] if i >= _FAST else [])
         for i, m in enumerate(NUMPY)]


@pytest.mark.parametrize("path, old, new, what, tests", CASES)
def test_the_suite_notices(tmp_path, path, old, new, what, tests):
    code, out = _run_on_copy(tmp_path, (path, old, new), [tests], {"RNNLAB_KERNELS": "numpy"})
    assert code == 1 and "failed" in out, f"{what}: the suite did not notice\n{out}"


@pytest.mark.slow
@pytest.mark.parametrize("path, old, new, what, tests", COMPILED, ids=[m[3] for m in COMPILED])
def test_the_suite_notices_in_the_compiled_units(tmp_path, path, old, new, what, tests):
    pytest.importorskip("numba")
    code, out = _run_on_copy(tmp_path, (path, old, new), [tests], {})
    assert code == 1 and "failed" in out, f"{what}: the suite did not notice\n{out}"
