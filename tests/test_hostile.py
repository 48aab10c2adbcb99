"""Hostile files cost nothing: every file of tests/hostile_files.py, read by the reader it
targets in a fresh interpreter whose address space is capped, is a ValueError naming the
file within a second, with no more than a few MB allocated. Then hypothesis varies the
sizes such files claim, in this process: only ValueError / TypeError, quickly."""
import json
import pathlib
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import hostile_files as H
import rnnlab

HERE = pathlib.Path(__file__).parent
CAP = 3 << 30                   # address space of the reading process (the files ask 400 MB+)

_READER = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
import hostile_files as H
import rnnlab
from rnnlab.tools.convert import read
try:                    # the optional reader's package, imported before any clock runs:
    import onnx         # noqa: F401  (its ~0.5-1 s import is not a file's cost)
except ImportError:
    pass
results = []
for path, how in json.loads(sys.argv[2]):
    resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[3]), int(sys.argv[3])))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    try:
        {"torch": rnnlab.load_torch, "load": rnnlab.load, "onnx": rnnlab.import_onnx,
         "convert": read}[how](path)
        outcome = "no error"
    except Exception as exc:
        outcome = f"{type(exc).__name__}|{isinstance(exc, (ValueError, TypeError))}|{exc}"
    results.append([path, outcome, time.perf_counter() - t0,
                    (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024])
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("hostile")
    return [builder(d) for builder in H.BUILDERS]


def test_every_hostile_file_is_a_quick_clear_error(hostile):
    files = [[str(p), how] for p, how in hostile]
    r = subprocess.run([sys.executable, "-c", _READER, str(HERE), json.dumps(files),
                        str(CAP)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    bad = []
    for path, outcome, seconds, grew_mb in results:
        name = pathlib.Path(path).name
        kind, clear, message = (outcome.split("|", 2) + ["", ""])[:3]
        if clear != "True" or name not in message or seconds > 1.0 or grew_mb > 64:
            bad.append((name, outcome[:200], round(seconds, 2), round(grew_mb)))
    assert not bad, bad


# -- the same shapes of attack, sizes drawn by hypothesis ----------------------------------
def _only_clear(fn, path):
    t0 = time.perf_counter()
    try:
        fn(path)
    except (ValueError, TypeError) as exc:
        assert str(exc)
    assert time.perf_counter() - t0 < 1.0


@settings(max_examples=30, deadline=None)
@given(numel=st.integers(0, 10 ** 15), size=st.lists(st.integers(0, 10 ** 6), max_size=4),
       stride=st.lists(st.integers(0, 10 ** 6), max_size=4), offset=st.integers(0, 10 ** 9),
       stored=st.integers(0, 64))
def test_torch_tensor_claims(tmp_path_factory, numel, size, stride, offset, stored):
    d = tmp_path_factory.mktemp("claims")
    pkl = H._dumps({"w": H._Tensor(H._Store("0", numel), offset, tuple(size), tuple(stride))})
    path = H._torch_zip(d / "c.pt", pkl, [("0", bytes(stored))])
    _only_clear(rnnlab.load_torch, path)


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(0, 10 ** 7), max_size=4), stored=st.integers(0, 4096),
       descr=st.sampled_from(["<f4", "<f8", ">f4", "<i8", "|b1"]))
def test_npz_header_claims(tmp_path_factory, shape, stored, descr):
    import io
    import zipfile
    d = tmp_path_factory.mktemp("npz")
    buf = io.BytesIO()
    np.lib.format.write_array_header_2_0(buf, {"descr": descr, "fortran_order": False,
                                              "shape": tuple(shape)})
    path = d / "c.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("w.npy", buf.getvalue() + bytes(stored))
    _only_clear(rnnlab.load, path)


@settings(max_examples=30, deadline=None)
@given(entries=st.lists(st.tuples(
    st.sampled_from(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "x", "__metadata__"]),
    st.sampled_from(["F32", "F64", "I8", "BOOL", "X"]),
    st.lists(st.one_of(st.integers(-2, 10 ** 9), st.floats(0, 10)), max_size=3),
    st.tuples(st.integers(-5, 10 ** 9), st.integers(-5, 10 ** 9))), max_size=4),
    data=st.integers(0, 256))
def test_safetensors_header_claims(tmp_path_factory, entries, data):
    import struct
    d = tmp_path_factory.mktemp("st")
    header = {name: {"dtype": dt, "shape": shape, "data_offsets": list(offs)}
              for name, dt, shape, offs in entries}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path = d / "c.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(data))
    _only_clear(rnnlab.load, path)


def test_limits_can_be_raised_for_a_trusted_file(tmp_path, monkeypatch):
    """The caps are module settings: a large, legitimate stride-0 tensor loads once the
    budget is raised."""
    pkl = H._dumps({"w": H._Tensor(H._Store("0", 1), 0, (8192, 4096), (0, 0))})
    path = H._torch_zip(tmp_path / "wide.pt", pkl, [("0", np.ones(1, np.float32).tobytes())])
    with pytest.raises(rnnlab.io.limits.LimitError, match="wide.pt"):
        rnnlab.load_torch(path)
    monkeypatch.setattr(rnnlab.io.limits, "SLACK_BYTES", 1 << 28)
    assert rnnlab.load_torch(path)["w"].shape == (8192, 4096)
