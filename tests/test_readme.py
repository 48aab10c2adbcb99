"""Every python snippet in the README runs (in order, sharing one namespace); snippets that
import torch are skipped when torch is not installed."""
import importlib.util
import pathlib
import re

import pytest

README = pathlib.Path(__file__).parent.parent / "README.md"
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def test_readme_snippets_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                     # snippets write files
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    ns, skipped = {}, 0
    for block in blocks:
        if "import torch" in block and not HAVE_TORCH:
            skipped += 1
            continue
        exec(compile(block, "README.md", "exec"), ns)
    if skipped:
        pytest.skip(f"{skipped} snippet(s) need torch")


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = [line for line in (README.parent / ".ci" / "run").read_text().splitlines()
          if "pytest" in line and not line.startswith("#")]
    assert len(ci) == 1 and ci[0] in text
