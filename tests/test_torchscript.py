"""TorchScript archives (torch.jit.save) read as data: tensors by module path, cells and
layers rebuilt from them, and hostile archives (code in code/, pickles naming other
callables) refused or read without running anything."""
import io
import pickle
import zipfile

import numpy as np
import pytest

import rnnlab
from rnnlab.io.torch_file import UnsafeCheckpointError

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")


class Encoder(torch.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.rnn = getattr(torch.nn, cls)(3, 4, num_layers=2, bidirectional=True)
        self.cell = getattr(torch.nn, cls + "Cell")(3, 2)
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


class Model(torch.nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.encoder = Encoder(cls)

    def forward(self, x):
        return self.encoder(x)


@pytest.mark.parametrize("how", ["script", "trace"])
@pytest.mark.parametrize("cls", ["GRU", "LSTM"])
def test_torchscript_tensors_by_module_path(tmp_path, how, cls):
    torch.manual_seed(0)
    m = Model(cls).eval()
    x = torch.randn(5, 2, 3)
    sm = torch.jit.script(m) if how == "script" else torch.jit.trace(m, x)
    torch.jit.save(sm, str(tmp_path / "m.pt"))
    sd = rnnlab.load_torch(tmp_path / "m.pt")
    assert list(sd) == list(m.state_dict())
    layer = rnnlab.from_state_dict(sd, prefix="encoder.rnn.", dtype=np.float64)
    cell = rnnlab.from_state_dict(sd, prefix="encoder.cell.", dtype=np.float64)
    assert type(cell).__name__ == cls + "Cell"
    xd = x.double()
    with torch.no_grad():
        want = m.encoder.rnn.double()(xd)[0].numpy()
        want_cell = m.encoder.cell.double()(xd[0])
    np.testing.assert_allclose(layer(xd.numpy())[0], want, atol=1e-12)
    got_cell = cell(xd[0].numpy())
    got_cell = got_cell[0] if isinstance(got_cell, tuple) else got_cell
    want_cell = want_cell[0] if isinstance(want_cell, tuple) else want_cell
    np.testing.assert_allclose(got_cell, want_cell.numpy(), atol=1e-12)


def test_convert_runs_the_torchscript_source(tmp_path):
    from rnnlab.tools.convert import convert
    torch.manual_seed(0)
    torch.jit.save(torch.jit.script(Model("GRU").eval()), str(tmp_path / "m.pt"))
    lines = []
    err = convert(str(tmp_path / "m.pt"), str(tmp_path / "rnn.safetensors"),
                  prefix="encoder.rnn.", allow_unused=True, print_fn=lines.append)
    assert err < 1e-5 and "torch (TorchScript)" in lines[-1]


def _archive(path, pkl, extra=()):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", pkl)
        z.writestr("m/version", "3\n")
        for name, data in extra:
            z.writestr(name, data)
    return path


class _Global:
    """Pickles as GLOBAL module name, REDUCE'd with args (what a hostile file writes)."""

    def __init__(self, module, name, args):
        self.module, self.name, self.args = module, name, args

    def __reduce__(self):
        f = type(self.name, (), {"__module__": self.module, "__qualname__": self.name})
        return (f, self.args)


def _pickle_calling(module, name, args):
    """A pickle that calls module.name(*args) on load, written by hand (protocol 2)."""
    body = b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(args, 2)[2:-1] + \
        b"R."
    return body


def test_code_files_are_never_run(tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')\n".encode()
    torch.manual_seed(0)
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(Model("GRU")), buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(tmp_path / "m.pt", "w") as z:
        for info in src.infolist():
            data = src.read(info)
            if "/code/" in info.filename and info.filename.endswith(".py"):
                data = code + data
            z.writestr(info, data)
    sd = rnnlab.load_torch(tmp_path / "m.pt")
    assert "encoder.rnn.weight_ih_l0" in sd and not marker.exists()


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval"),
                                          ("torch.jit", "load"), ("torch", "load")])
def test_hostile_pickles_in_an_archive_are_refused(tmp_path, module, name):
    marker = tmp_path / "ran"
    pkl = _pickle_calling(module, name, (f"touch {marker}",))
    path = _archive(tmp_path / "h.pt", pkl, [("m/code/__torch__.py", b"import os\n")])
    with pytest.raises(UnsafeCheckpointError, match=f"{module}.{name}"):
        rnnlab.load_torch(path)
    assert not marker.exists()


def test_archive_classes_are_inert_records(tmp_path):
    """A __torch__ class called with arguments, or given a state that is not a dict, stays
    an inert record: nothing runs and no tensors come out of it."""
    pkl = _pickle_calling("__torch__.evil", "Module", ("rm -rf /",))
    with pytest.raises(ValueError):          # a record, not a state_dict: from_state_dict refuses
        rnnlab.from_state_dict(rnnlab.load_torch(_archive(tmp_path / "a.pt", pkl)))
    assert rnnlab.load_torch(_archive(tmp_path / "a.pt", pkl)) == {}
