"""What /health knows of the worker `boxal serve` runs beside it: two small files in the broker folder, since
the API may answer from other processes than the one supervising the worker (``BOXAL_API_WORKERS`` > 1).

- ``worker.json``: written by the supervisor (app/serving.py) whenever the worker starts, exits or is
  given up on: ``{"state", "pid", "serve_pid", "restarts", "last_exit", "since"}``;
- ``worker.ready``: the pid of the worker that is consuming, written by the worker itself once Celery
  says it is ready (worker/celery_app.py).
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from app.settings import Settings

STATE_FILE = "worker.json"
READY_FILE = "worker.ready"

# ok: consuming; starting: started, not yet consuming; restarting: exited, a new one starts after a backoff;
# failed: exited more often in a row than BOXAL_WORKER_RESTARTS allows, not restarted; paused: stopped by a
# signal (SIGSTOP, Ctrl-Z) or a debugger, so it runs nothing until continued; stopped: the server is
# shutting down; external: this server started no worker (workers run elsewhere, as `boxal worker`), so it
# cannot tell
WorkerHealth = Literal["ok", "starting", "restarting", "failed", "paused", "stopped", "external"]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text)
    os.replace(partial, path)  # readers see the old state or the new one, never half of one


def record(settings: Settings, state: str, *, pid: int | None, restarts: int, last_exit: int | None) -> None:
    """The supervisor's account of its worker (called from the process that runs `boxal serve`)."""
    body = {
        "state": state,
        "pid": pid,
        "serve_pid": os.getpid(),
        "restarts": restarts,
        "last_exit": last_exit,
        "since": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write(settings.broker_dir / STATE_FILE, json.dumps(body))


def forget(settings: Settings) -> None:
    """No worker of this server's: what an earlier run left says nothing about this one."""
    for name in (STATE_FILE, READY_FILE):
        with contextlib.suppress(FileNotFoundError):
            (settings.broker_dir / name).unlink()


def mark_ready(settings: Settings) -> None:
    """Called in the worker once it consumes."""
    _write(settings.broker_dir / READY_FILE, str(os.getpid()))


def read(settings: Settings) -> dict[str, Any] | None:
    try:
        return dict(json.loads((settings.broker_dir / STATE_FILE).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def alive(pid: object) -> bool:
    """Whether a process of this machine runs under ``pid`` (a zombie does not)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return _state(pid) != "Z"  # a zombie (exited, not yet reaped by the supervisor) is not alive


def _state(pid: int) -> str | None:
    """The process's state letter in /proc (R, S, D, T stopped by a signal, t stopped by a tracer, Z...)."""
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return None


def health(settings: Settings) -> WorkerHealth:
    """The worker's state as /health reports it; reads two small files and checks two pids."""
    state = read(settings)
    if state is None or not alive(state.get("serve_pid")):
        return "external"
    if state["state"] in ("restarting", "failed", "stopped"):
        return state["state"]  # type: ignore[no-any-return]
    if state["state"] != "running" or not alive(state.get("pid")):
        return "restarting"  # exited a moment ago: the supervisor has not seen it yet
    if _state(state["pid"]) in ("T", "t"):
        return "paused"  # SIGSTOP, Ctrl-Z or a debugger: it holds its tasks and runs none until SIGCONT
    try:
        ready = int((settings.broker_dir / READY_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return "starting"
    return "ok" if ready == state["pid"] else "starting"
