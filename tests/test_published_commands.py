"""Every command printed in docs/PERFORMANCE.md and docs/results/ runs as printed, at smoke size: a benchmark
or an experiment that stops working fails CI. Asserts that each completes and prints its table or writes its
report, never a timing. (The pytest commands printed there are this suite's own tests.)"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from worker.engine.d2 import MISSING as D2_MISSING
from worker.engine.d2 import available as d2_available

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "PERFORMANCE.md", *sorted((ROOT / "docs" / "results").rglob("*.md"))]
RUNNABLE = ("python bench/", "boxal simulate", "boxal report")
READS_RUNS = (
    "boxal report",
    "python bench/noisy_targets.py",
)  # they start after the runs printed before them
ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=\S+$")
PART = re.compile(r"\s--(seed|arm|out)\s+(\S+)")  # what tells apart the parts of one experiment
SEED_OUT = re.compile(r"\s--(seed|out)\s+\S+")  # what tells apart the seeds of the same arms


def published() -> list[str]:
    """The runnable lines of every bash block of the docs, comments off, each once, in order.

    A benchmark printed twice with only its numbers changed (``--budget 150`` and ``--budget 600``) is
    one command at smoke size, where ``--smoke`` sets the sizes: it runs once (`distinct`). Every
    ``boxal simulate`` line is listed; `smoke_runs` says which of them share one run.
    """
    lines = [
        line.split("  #")[0].strip()
        for doc in DOCS
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S)
        for line in block.splitlines()
    ]
    return distinct([line for line in lines if _program(line).startswith(RUNNABLE)])


def distinct(commands: list[str]) -> list[str]:
    """The commands that differ at smoke size, each once, in order.

    A benchmark's numbers do not tell runs apart, nor which seed of the same arms an analysis reads:
    ``noisy_targets.py`` printed for the box parts of seeds 0 and 1 runs once at smoke size, on the first,
    and the other part joins its experiment's shared run (`smoke_runs`). Parts with other arms stay apart.
    """
    experiment: dict[str, str] = {}  # a simulate part's --out -> its experiment's settings
    kept: dict[str, str] = {}  # what identifies a run at smoke size -> the first command printed for it
    for command in commands:
        named = dict(PART.findall(command))
        if _program(command).startswith("boxal simulate") and "arm" in named and "out" in named:
            experiment[named["out"]] = SEED_OUT.sub("", command)
        same = command
        if _program(command).startswith("python bench/"):
            same = re.sub(r"(?<=\s)[0-9][0-9_.]*(?=\s|$)", "N", command)
            same = " ".join(experiment.get(word, word) for word in same.split(" "))
        kept.setdefault(same, command)
    return list(kept.values())


def smoke_runs(commands: list[str]) -> dict[str, str]:
    """Each command and the command run for it at smoke size.

    ``boxal simulate`` lines that name their arms and differ only in ``--seed``, ``--arm`` and ``--out``
    are parts of one experiment (arms of a preset, made apart); at smoke size they are one run of the first
    part's seed with every arm any part names, so each arm and setting still runs while the preset's toy
    experiment is built once, not once per part. A part whose output a printed report or analysis reads
    runs as printed; a part whose arms such a part of the same experiment already runs is that run (the
    seeds of a round three experiment, whose first seed an analysis reads, are one run).
    """
    read = {word for c in commands if _program(c).startswith(READS_RUNS) for word in shlex.split(c)}
    as_printed: dict[str, list[str]] = {}  # an experiment's settings -> its parts that run as printed
    part_of: dict[str, str | None] = {}  # a command -> its experiment's settings, None if it runs alone
    for command in commands:
        named = dict(PART.findall(command))
        if not _program(command).startswith("boxal simulate") or "arm" not in named:
            part_of[command] = None
        elif named.get("out") in read:
            part_of[command] = None
            as_printed.setdefault(PART.sub("", command), []).append(command)
        else:
            part_of[command] = PART.sub("", command)
    merged: dict[str, str] = {}  # an experiment's settings -> its smoke run
    plan: dict[str, str] = {}  # a command -> what runs for it, where that is known before every part is read
    for command, key in part_of.items():
        covering = [run for run in as_printed.get(key or "", []) if _covers(run, command)]
        if key is None or covering:
            plan[command] = covering[0] if covering else command
            continue
        run = merged.setdefault(key, command)
        merged[key] = run + "".join(f" --arm {arm}" for arm in _arms(command) if arm not in _arms(run))
    return {command: plan.get(command) or merged[str(key)] for command, key in part_of.items()}


def _arms(command: str) -> list[str]:
    """The arms a command names, in its order."""
    return [arm for name, arm in PART.findall(command) if name == "arm"]


def _covers(run: str, part: str) -> bool:
    return set(_arms(part)) <= set(_arms(run))


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
        before = words[i - 1] if i else ""
        # committed runs a report reads (docs/results/runs/...) are read as they are; its --out is not
        committed = before != "--out" and word.startswith("docs/results/") and (ROOT / word).exists()
        if word.startswith(("experiments/", "docs/results/")) and before != "--data" and not committed:
            words[i] = str(tmp / word)
    return words


def test_the_docs_print_runnable_commands() -> None:
    commands = published()
    assert any(c.startswith("python bench/lease_bench.py") for c in commands)
    assert any(c.startswith("boxal simulate") for c in commands)


def test_parts_of_one_experiment_share_a_smoke_run() -> None:
    a = "boxal simulate --preset bccd --seed 0 --arm full --out experiments/a"
    b = "boxal simulate --preset bccd --seed 1 --arm control --arm full --out experiments/b"
    read = "boxal simulate --preset bccd --seed 2 --arm box/paper --out experiments/c"
    other = "boxal simulate --preset bccd --seed 0 --rounds 1 --arm full --out experiments/d"
    every = "boxal simulate --preset bccd --seed 1 --out experiments/e"  # the preset's arms
    bare = "boxal simulate --preset bccd"  # reads like a's settings, but runs every arm
    report = "boxal report experiments/c experiments/e --out merged"
    plan = smoke_runs([a, b, read, other, every, bare, report])
    assert plan[a] == plan[b] == f"{a} --arm control"
    assert [plan[c] for c in (read, other, every, bare, report)] == [read, other, every, bare, report]


def test_an_analysis_printed_for_each_seed_of_the_same_arms_runs_once() -> None:
    simulate = "OMP_NUM_THREADS=1 boxal simulate --preset bccd"
    parts = [
        (0, "box/paper", "s0-a"),
        (1, "box/paper", "s1-a"),
        (1, "image/random", "s1-b"),
        (0, "box/new-soft", "s0-c"),
    ]
    s0, s1, s1_images, s0_other = (
        f"{simulate} --seed {n} --arm {arm} --out experiments/{out}" for n, arm, out in parts
    )
    on_s0, on_s1, on_other = (
        f"python bench/noisy_targets.py experiments/{part}" for part in ("s0-a", "s1-a", "s0-c")
    )
    report = "boxal report experiments/s0-a --out merged"
    budgets = ["python bench/lease_bench.py --budget 150", "python bench/lease_bench.py --budget 600"]
    commands = distinct([s0, s1, s1_images, s0_other, on_s0, on_s1, on_other, report, *budgets])
    assert commands == [s0, s1, s1_images, s0_other, on_s0, on_other, report, budgets[0]]
    plan = smoke_runs(commands)  # what reads s0-a and s0-c runs as printed, and s0-a runs s1-a's arm too
    assert (plan[s0], plan[s0_other], plan[s1], plan[s1_images]) == (s0, s0_other, s0, s1_images)


def test_the_seeds_of_the_same_arms_as_a_part_run_as_printed_are_that_run() -> None:
    simulate = "OMP_NUM_THREADS=1 boxal simulate --preset bccd --arm auto --arm control"
    s0, s1, s2 = (f"{simulate} --seed {n} --out experiments/s{n}" for n in range(3))
    more = "OMP_NUM_THREADS=1 boxal simulate --preset bccd --arm auto --arm full --seed 1 --out experiments/m"
    plan = smoke_runs([s0, s1, s2, more, "python bench/noisy_targets.py experiments/s0"])
    assert plan[s0] == plan[s1] == plan[s2] == s0
    assert plan[more] == more  # full is not in s0: it runs, as the parts of the seeds not read would


def test_a_report_reads_committed_runs_as_they_are_and_writes_under_the_smoke_folder(tmp_path: Path) -> None:
    command = (
        "boxal report docs/results/runs/bccd/s0-full experiments/new "
        "--reference docs/results/runs/bccd/s1-all --out docs/results/bccd"
    )
    argv = _argv(command, tmp_path)
    assert argv[3:] == [
        "report", "docs/results/runs/bccd/s0-full", str(tmp_path / "experiments/new"), "--reference",
        "docs/results/runs/bccd/s1-all", "--out", str(tmp_path / "docs/results/bccd"),
    ]  # fmt: skip


def test_each_published_part_runs_its_arms_and_settings() -> None:
    for command, ran in smoke_runs(published()).items():
        assert PART.sub("", command) == PART.sub("", ran)
        arms = {arm for name, arm in PART.findall(ran) if name == "arm"}
        assert {arm for name, arm in PART.findall(command) if name == "arm"} <= arms
        assert all(value.isdigit() for name, value in PART.findall(command) if name == "seed"), command


def runnable_here(command: str) -> bool:
    """A run on the detectron2 backend needs Detectron2 installed (CI builds it; README)."""
    return "--backend detectron2" not in command or d2_available()


PARALLEL = 2  # commands at once: most of a smoke run is starting processes and waiting on them
# one compute thread per command (and the server and worker it starts): two torch processes of 2 threads
# each on 2 cores spin against each other. A 20-step train took 9.2 s alone, 24 s with another beside it,
# and 10.8-11.2 s each with OMP_NUM_THREADS=1 (2026-12-02, docs/PERFORMANCE.md)
ONE_THREAD = {"OMP_NUM_THREADS": "1"}
Ran = tuple[list[str], subprocess.CompletedProcess]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[Ran]]]:
    """Every published command, started at smoke size two at a time, in the docs' order; each test waits
    for its own, so a slow machine stretches the tests one command at a time. A command that reads runs
    (a report, an analysis) starts once every command printed before it has ended."""
    tmp = tmp_path_factory.mktemp("published")

    def run(command: str) -> Ran:
        argv = _argv(command, tmp)
        done = subprocess.run(
            argv,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=1800,  # a whole preset at smoke size beside another command on 2 slow cores took >900 s
            env={**os.environ, "COLUMNS": "160", **ONE_THREAD, **_environment(command)},
        )
        for i, word in enumerate(argv[:-1]):  # its models: 56-168 MB a run, read by no test or command
            if word == "--out":
                shutil.rmtree(Path(argv[i + 1]) / "server" / "artifacts", ignore_errors=True)
        return argv, done

    def after(earlier: list[Future[Ran]], command: str) -> Ran:
        wait(earlier)
        return run(command)

    started: dict[str, Future[Ran]] = {}  # by the command run
    with ThreadPoolExecutor(PARALLEL) as pool, ThreadPoolExecutor(1) as reports:
        plan = smoke_runs([c for c in published() if runnable_here(c)])
        for command in dict.fromkeys(plan.values()):
            if _program(command).startswith(READS_RUNS):
                started[command] = reports.submit(after, list(started.values()), command)
            else:
                started[command] = pool.submit(run, command)
        yield {command: started[ran] for command, ran in plan.items()}
        for future in started.values():
            future.cancel()  # a failed or interrupted session does not wait for the rest


@pytest.mark.slow
@pytest.mark.timeout(2400)  # its wait includes the queue before its command starts, then up to 1,800 s
@pytest.mark.parametrize("command", published())
def test_a_published_command_runs_at_smoke_size(command: str, runs: dict[str, Future[Ran]]) -> None:
    if not runnable_here(command):
        pytest.skip(D2_MISSING)
    argv, done = runs[command].result()
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if _program(command).startswith("python bench/"):
        assert "| ---" in done.stdout, done.stdout[-2000:]  # it printed its table
    else:
        out = Path(argv[argv.index("--out") + 1])
        assert (out / "summary.md").is_file() and (out / "rounds.csv").is_file()
