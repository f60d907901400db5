"""The Celery application of boxal's workers. Its configuration (app/enqueue.py's, shared with the API)
is read from the settings the first time Celery needs it, when the worker starts, not at import.

celery -A worker.celery_app worker -Q boxal      (what `boxal worker` runs)
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery, signals

from app.enqueue import celery_config
from app.settings import get_settings

log = logging.getLogger(__name__)

app = Celery("boxal-worker", set_as_current=False, include=["worker.tasks"])


def _configuration() -> dict[str, Any]:
    settings = get_settings()
    return {
        **celery_config(settings),
        "worker_concurrency": settings.worker_concurrency,
        # training messages carry their own, longer limit (worker/tasks.py)
        "task_soft_time_limit": settings.task_time_limit_s,
        "task_time_limit": settings.task_time_limit_s + 60,
    }


app.add_defaults(_configuration)


@signals.worker_init.connect
def _watch_parent(**_: object) -> None:
    """Started by `boxal serve`: the worker and its pool go when serve goes, SIGKILL included."""
    from app.lifeline import watch_parent

    watch_parent(get_settings())


@signals.worker_ready.connect
def _start_reaper(**_: object) -> None:
    """At start, then every job_stale_s / 2 (at most 30 s), re-send jobs whose worker went silent or whose
    holding process on this machine is gone (a worker `boxal serve` restarted takes its round on at once)."""
    from app import worker_state
    from worker.tasks import reap

    settings = get_settings()
    every = min(30.0, settings.job_stale_s / 2)
    if settings.is_embedded_broker:
        worker_state.mark_ready(settings)  # /health: this worker consumes

    def loop() -> None:
        stop = threading.Event()
        while True:
            try:
                reap()
            except Exception:  # the reaper must never take the worker down
                log.exception("job reaper failed")
            stop.wait(every)

    threading.Thread(target=loop, name="boxal-reaper", daemon=True).start()
