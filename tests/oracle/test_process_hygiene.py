"""`boxal simulate` starts `boxal serve`, which starts a Celery worker (its threads pool runs the tasks).
Killed by SIGKILL mid-round (no handler runs), neither the command nor its server may leave a process behind
(app/lifeline.py). The descendants are read from /proc before the kill, so orphans re-parented to pid 1
are still found."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.worker.loop import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc"),
]


def _stat(pid: int, thread: int | None = None) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a live process, or of one of its threads; None once it is gone or a
    zombie."""
    path = Path(f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat")
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _descendants(root: int) -> set[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = stat[0]
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _busiest_thread_seconds(pid: int) -> float:
    """CPU seconds of the busiest thread but the main one (which only imports and listens)."""
    seconds = [0.0]
    with contextlib.suppress(FileNotFoundError, ProcessLookupError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            if task.name != str(pid) and (stat := _stat(pid, int(task.name))) is not None:
                seconds.append(stat[1])
    return max(seconds)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.mark.parametrize("victim", ["simulate", "serve"])
def test_sigkill_mid_round_leaves_no_process_behind(victim: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "app.cli", "simulate", "--preset", "smoke", "--out", str(tmp_path)]
    simulate = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    tree: set[int] = set()
    try:

        def training_worker() -> int | None:  # a thread of the Celery worker at work: a round is under way
            for pid in _descendants(simulate.pid):  # (threads pool: tasks run in the worker's own process)
                if "celery" in _cmdline(pid) and _busiest_thread_seconds(pid) > 2.0:
                    return pid
            return None

        wait_for(training_worker, 300, "the embedded worker to be training")
        tree = _descendants(simulate.pid)
        serve = next(pid for pid in tree if " serve " in _cmdline(pid))
        assert any("celery" in _cmdline(pid) for pid in tree) and len(tree) >= 2  # serve and its worker
        os.kill(simulate.pid if victim == "simulate" else serve, signal.SIGKILL)
        everyone = tree | {simulate.pid} if victim == "simulate" else tree
        wait_for(lambda: all(_stat(pid) is None for pid in everyone) or None, 10, "every descendant to go")
    finally:
        left = tree | _descendants(simulate.pid)  # strays too, should the test have failed
        if simulate.poll() is None:
            os.killpg(simulate.pid, signal.SIGKILL)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        simulate.wait(timeout=30)
