"""The docs run as written: every Python block of README.md and docs/*.md, in order, one
namespace per page (in a scratch directory, from the repository root's imports), after
the commands of the ``console`` blocks before it; every other ``rnnlab ...`` command they
show parses with the command's own parser; and .ci/run runs the README's test command."""
import pathlib
import re
import shlex
import sys

import pytest

from rnnlab.tools import cli

ROOT = pathlib.Path(__file__).parent.parent
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_python_blocks_run(page, tmp_path, monkeypatch, capsys):
    """Python blocks run in order, one namespace per page; ``console`` blocks before them
    run their ``$ rnnlab ...`` commands first (a walkthrough: train, then use the run)."""
    blocks = re.findall(r"```(python|console)\n(.*?)```", page.read_text(), flags=re.S)
    if not any(kind == "python" for kind, _ in blocks):
        pytest.skip("no Python block")
    monkeypatch.chdir(tmp_path)                     # blocks write files
    monkeypatch.syspath_prepend(str(ROOT))          # `import examples.mgu_family`
    ns = {"__name__": f"docs_{page.stem}"}
    from rnnlab import cells
    before = set(cells.FAMILIES)
    try:
        for kind, block in blocks:
            if kind == "console":
                for line in block.splitlines():
                    if line.startswith("$ rnnlab "):
                        assert cli.main(shlex.split(line[2:])[1:]) == 0, line
                continue
            exec(compile(block, str(page.name), "exec"), ns)
    finally:                                        # a page may register a family
        for kind in set(cells.FAMILIES) - before:
            cells.unregister(kind)
        sys.modules.pop("examples.mgu_family", None)


def _commands(text):
    """``rnnlab ...`` lines of code blocks (fenced or indented), prompts and comments cut."""
    found = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S) + re.findall(
            r"(?m)^    (rnnlab .*)$", text):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("rnnlab ") and "..." not in line:
                found.append(line.split("  #")[0].split(" # ")[0].strip())
    return found


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_shown_commands_parse(page):
    parser = cli.build_parser()
    for command in _commands(page.read_text()):
        argv = shlex.split(command)[1:]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            pytest.fail(f"{page.name}: `{command}` does not parse (exit {exc.code})")


def test_readme_commands_match_ci():
    text = (ROOT / "README.md").read_text()
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if "pytest" in line and not line.startswith("#")]
    assert len(ci) == 1 and ci[0] in text
    assert sys.version_info >= (3, 10)
