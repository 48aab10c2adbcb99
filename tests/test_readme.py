"""Every python snippet in the README runs (in order, sharing one namespace)."""
import pathlib
import re

README = pathlib.Path(__file__).parent.parent / "README.md"


def test_readme_snippets_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 5
    ns = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), ns)


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in text
