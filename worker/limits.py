"""Task time limits, kept by boxal itself: the worker runs Celery's threads pool, which enforces none.

Why threads and not Celery's default prefork pool: prefork's children share the pool's queue locks with
their parent, and a child killed while it holds one (SIGKILL, the OOM killer) leaves every later child
blocked in ``SemLock.acquire``: the worker takes tasks and never runs them (celery/celery#2011). With
threads there is one process: a kill takes it whole, and whoever started it (`boxal serve`'s supervisor,
a container's restart policy) starts a new one, whose reaper sends the job again at once.

- the soft limit is checked at every heartbeat a stage beats (a training step's report, a scored shard):
  past it, ``SoftTimeLimitExceeded`` is raised in the task's own thread, which fails the job with a
  readable error (worker/tasks.py);
- the hard limit is a timer: a task still running ``HARD_GRACE_S`` after its soft limit (stuck where no
  heartbeat beats) has its job failed and the process exits, as prefork kills its child; it is restarted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded

log = logging.getLogger(__name__)
HARD_GRACE_S = 60.0
_local = threading.local()


@contextmanager
def limited(soft_s: float | None, on_hard: Callable[[], None] | None = None) -> Iterator[None]:
    """Run the body under a soft limit of ``soft_s`` seconds (None: none); past ``soft_s + HARD_GRACE_S``
    ``on_hard`` runs (in a timer thread), then this process exits."""
    _local.deadline = time.monotonic() + soft_s if soft_s else None
    timer = None
    if soft_s:

        def hard() -> None:
            log.error("a task ran %.0f s past its time limit of %.0f s: stopping this worker", HARD_GRACE_S,
                      soft_s)  # fmt: skip
            try:
                if on_hard is not None:
                    on_hard()
            finally:
                os._exit(70)  # EX_SOFTWARE: the supervisor restarts the worker

        timer = threading.Timer(soft_s + HARD_GRACE_S, hard)
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        _local.deadline = None
        if timer is not None:
            timer.cancel()


def check() -> None:
    """Raise SoftTimeLimitExceeded in the calling thread once its task is past its soft limit."""
    deadline = getattr(_local, "deadline", None)
    if deadline is not None and time.monotonic() > deadline:
        raise SoftTimeLimitExceeded()
