"""A child process that must not outlive the process that started it.

`boxal simulate` starts `boxal serve`, and `boxal serve` starts its embedded Celery worker (and, with
``BOXAL_API_WORKERS`` > 1, its API processes), each with ``BOXAL_PARENT_PID`` set to the starter's pid
and, except the API processes, in a process group of its own. Every such child watches that pid; once the
parent is gone (it exited, crashed, or was killed by SIGKILL, which no handler sees) the child kills its
own process group: itself, its Celery pool processes, its data loaders. The chain unwinds from the top:
simulate gone -> serve's group -> the worker sees serve gone -> the worker's group.

Why a watch and not the alternatives: a signal handler in the parent cannot run on SIGKILL; a process
group is only cleaned up if someone signals it; Linux's PR_SET_PDEATHSIG signals one process (not its
pool) and only on Linux. A poll of ``getppid()`` covers every way the parent ends, on every POSIX system,
and costs one system call every half second.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable

from app.settings import Settings

log = logging.getLogger(__name__)
PARENT_ENV = "BOXAL_PARENT_PID"
POLL_S = 0.5


def child_env() -> dict[str, str]:
    """The environment entry a child started by this process gets."""
    return {PARENT_ENV: str(os.getpid())}


def watch_parent(settings: Settings, on_gone: Callable[[], None] | None = None) -> bool:
    """Call ``on_gone`` (default: kill this process's group) once the process named by BOXAL_PARENT_PID
    is no longer this one's parent. Returns False, watching nothing, where none is named."""
    parent = settings.parent_pid
    if parent is None:
        return False
    act = on_gone or kill_own_group

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(POLL_S)
        log.warning("the process that started this one (pid %s) is gone: stopping", parent)
        act()

    threading.Thread(target=watch, name="boxal-lifeline", daemon=True).start()
    return True


def kill_own_group() -> None:
    """Kill this process and every process of its group (a worker and its pool), at once."""
    os.killpg(os.getpgrp(), signal.SIGKILL)
