"""Every command and snippet in the docs runs: each fenced ``bash`` or ``python`` block of README.md and
docs/*.md is run, in document order (README first, then docs/ sorted), against one demo store, as a user
would run it from the folder that holds ``demo-run/``. Blocks fenced with any other language (console,
toml, text) are documentation only. Also: README.md stays short and opens with ``make demo``/``make test``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = ("bash", "python")
VENV_BIN = Path(sys.prefix) / "bin"  # the venv pytest runs in: its latentfeed, its python

DEMO = ["latentfeed", "demo", "--workdir", "demo-run", "--days", "2", "--rows", "3000", "--epochs", "3"]
DEMO_TIMEOUT_S = 900
BLOCK_TIMEOUT_S = 600
TAIL_CHARS = 4000

README_MAX_LINES = 260
README_HEAD_LINES = 30

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def fenced_blocks(path: Path) -> list[Block]:
    """The file's fenced code blocks (CommonMark fences: ``` or ~~~, closed by the same character at least
    as long), each with its language (the info string's first word, lowercased) and opening line."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, start = m["fence"], i
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        i += 1
        body = []
        while i < len(lines) and not closing.match(lines[i]):
            body.append(lines[i])
            i += 1
        blocks.append(Block(path, start + 1, m["info"].lower(), "\n".join(body) + "\n"))
        i += 1  # past the closing fence (or the end of the file)
    return blocks


def runnable_blocks() -> list[Block]:
    return [b for p in DOC_FILES for b in fenced_blocks(p) if b.language in RUN_LANGUAGES]


BLOCKS = runnable_blocks()


def user_env(prefect_home: Path) -> dict[str, str]:
    """The environment of a user in the activated venv with no servers configured: the venv's bin first on
    PATH, a Prefect home of its own, and none of the test session's Prefect or MLflow settings (the
    session's Prefect harness must not leak into what the docs promise works on its own)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PREFECT_", "MLFLOW_", "AWS_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    env["VIRTUAL_ENV"] = sys.prefix
    env["PREFECT_HOME"] = str(prefect_home)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def tail(text: str) -> str:
    return text if len(text) <= TAIL_CHARS else "…" + text[-TAIL_CHARS:]


def report(what: str, proc: subprocess.CompletedProcess | subprocess.TimeoutExpired) -> str:
    def text(x) -> str:
        return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")

    status = (f"exit {proc.returncode}" if isinstance(proc, subprocess.CompletedProcess)
              else f"timed out after {proc.timeout} s")
    return (f"{what}: {status}\n--- stdout (tail) ---\n{tail(text(proc.stdout))}"
            f"\n--- stderr (tail) ---\n{tail(text(proc.stderr))}")


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int, what: str) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(report(what, e), pytrace=False)
    if proc.returncode != 0:
        pytest.fail(report(what, proc), pytrace=False)
    return proc


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The folder that holds ``demo-run/``, made by ``latentfeed demo`` (a small one), and the env to use."""
    folder = tmp_path_factory.mktemp("docs")
    env = user_env(tmp_path_factory.mktemp("docs-prefect-home"))
    run([str(VENV_BIN / DEMO[0]), *DEMO[1:]], folder, env, DEMO_TIMEOUT_S, " ".join(DEMO))
    assert (folder / "demo-run" / "latentfeed.toml").is_file()
    return folder, env


def test_docs_have_runnable_blocks():
    assert BLOCKS, f"no fenced bash or python block found in {[str(p) for p in DOC_FILES]}"
    assert any(b.path.name == "README.md" for b in BLOCKS)


def test_readme_is_short():
    n = len((ROOT / "README.md").read_text(encoding="utf-8").splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines, more than {README_MAX_LINES}"


def test_readme_starts_with_make_demo_and_make_test():
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:README_HEAD_LINES]

    def first(command: str) -> int | None:
        hit = [i for i, line in enumerate(head) if re.match(rf"^\s*(\$\s*)?{re.escape(command)}(\s|$)", line)]
        return hit[0] if hit else None

    demo, test = first("make demo"), first("make test")
    assert demo is not None, f"`make demo` is not a command line in README.md's first {README_HEAD_LINES} lines"
    assert test is not None, f"`make test` is not a command line in README.md's first {README_HEAD_LINES} lines"


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_doc_block_runs(block: Block, demo_folder, tmp_path):
    folder, env = demo_folder
    if block.language == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", block.code]
    else:
        script = tmp_path / f"{block.path.stem}_L{block.line}.py"
        script.write_text(block.code, encoding="utf-8")
        cmd = [str(VENV_BIN / "python"), str(script)]
    proc = run(cmd, folder, env, BLOCK_TIMEOUT_S, f"{block.id} ({block.language}) in {folder}")
    sys.stdout.write(f"\n--- {block.id} ---\n{tail(proc.stdout)}")  # shown with -rP / -s
