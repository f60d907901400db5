"""Every command printed in docs/PERFORMANCE.md and docs/results/ runs as printed, at smoke size: a benchmark
or an experiment that stops working fails CI. Asserts that each completes and prints its table or writes its
report, never a timing. (The pytest commands printed there are this suite's own tests.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from worker.engine.d2 import MISSING as D2_MISSING
from worker.engine.d2 import available as d2_available

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "PERFORMANCE.md", *sorted((ROOT / "docs" / "results").rglob("*.md"))]
RUNNABLE = ("python bench/", "boxal simulate", "boxal report")
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S+$")


def published() -> list[str]:
    """The runnable lines of every bash block of the docs, comments off, each once, in order.

    A benchmark printed twice with only its numbers changed (``--budget 150`` and ``--budget 600``) is
    one command at smoke size, where ``--smoke`` sets the sizes: it runs once. ``boxal simulate`` lines
    all run, since a report merges their outputs by seed.
    """
    commands: list[str] = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.splitlines():
                command = line.split("  #")[0].strip()
                if _program(command).startswith(RUNNABLE) and _same_run(command) not in map(
                    _same_run, commands
                ):
                    commands.append(command)
    return commands


def _same_run(command: str) -> str:
    """What identifies a run at smoke size: a benchmark's numbers do not."""
    if _program(command).startswith("python bench/"):
        return re.sub(r"(?<=\s)[0-9][0-9_.]*(?=\s|$)", "N", command)
    return command


def _program(command: str) -> str:
    """The command without its leading environment assignments (``BOXAL_API_WORKERS=2 python ...``)."""
    words = command.split()
    while words and ASSIGNMENT.match(words[0]):
        words = words[1:]
    return " ".join(words)


def _environment(command: str) -> dict[str, str]:
    words = shlex.split(command)
    env = {}
    while words and ASSIGNMENT.match(words[0]):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    return env


def _argv(command: str, tmp: Path) -> list[str]:
    """The command as this interpreter runs it, at smoke size, its outputs under ``tmp``."""
    words = shlex.split(_program(command))
    if words[0] == "python":
        words = [sys.executable, *words[1:], "--smoke"]
    else:  # boxal ...
        words = [sys.executable, "-m", "app.cli", *words[1:]]
        if words[3] == "simulate":
            words.append("--smoke")
    for i, word in enumerate(words):
        if word.startswith(("experiments/", "docs/results/")) and (i == 0 or words[i - 1] != "--data"):
            words[i] = str(tmp / word)
    return words


def test_the_docs_print_runnable_commands() -> None:
    commands = published()
    assert any(c.startswith("python bench/lease_bench.py") for c in commands)
    assert any(c.startswith("boxal simulate") for c in commands)


def runnable_here(command: str) -> bool:
    """A run on the detectron2 backend needs Detectron2 installed (CI builds it; README)."""
    return "--backend detectron2" not in command or d2_available()


PARALLEL = 2  # commands at once: most of a smoke run is starting processes and waiting on them


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[list[str], subprocess.CompletedProcess]]:
    """Every published command, run once at smoke size, two at a time; reports after the runs they merge."""
    tmp = tmp_path_factory.mktemp("published")

    def run(command: str) -> tuple[list[str], subprocess.CompletedProcess]:
        argv = _argv(command, tmp)
        done = subprocess.run(
            argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "COLUMNS": "160", **_environment(command)},
        )
        return argv, done

    commands = [c for c in published() if runnable_here(c)]
    merging = [c for c in commands if _program(c).startswith("boxal report")]
    first = [c for c in commands if c not in merging]
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = dict(zip(first, pool.map(run, first), strict=True))
    results.update({command: run(command) for command in merging})
    return results


@pytest.mark.slow
# the first test's setup runs every published command (about 32, each bounded by its own 900 s): longer than
# the suite's 600 s per test on a slow machine (10 min on 2 cores, over 10 on a machine half as fast)
@pytest.mark.timeout(2400)
@pytest.mark.parametrize("command", published())
def test_a_published_command_runs_at_smoke_size(command: str, runs) -> None:  # type: ignore[no-untyped-def]
    if not runnable_here(command):
        pytest.skip(D2_MISSING)
    argv, done = runs[command]
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if _program(command).startswith("python bench/"):
        assert "| ---" in done.stdout, done.stdout[-2000:]  # it printed its table
    else:
        out = Path(argv[argv.index("--out") + 1])
        assert (out / "summary.md").is_file() and (out / "rounds.csv").is_file()
