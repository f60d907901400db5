"""The Celery application of boxal's workers, configured from the shared settings (app/enqueue.py).

celery -A worker.celery_app worker -Q boxal      (what `boxal worker` runs)
"""

from __future__ import annotations

import logging
import threading

from celery import signals

from app.enqueue import make_celery
from app.settings import get_settings

log = logging.getLogger(__name__)

app = make_celery(get_settings(), name="boxal-worker")
app.conf.update(include=["worker.tasks"], worker_concurrency=get_settings().worker_concurrency)


@signals.worker_ready.connect
def _start_reaper(**_: object) -> None:
    """At start, then every job_stale_s / 2 (at most 30 s), re-send jobs whose worker went silent."""
    from worker.tasks import reap

    every = min(30.0, get_settings().job_stale_s / 2)

    def loop() -> None:
        stop = threading.Event()
        while True:
            try:
                reap()
            except Exception:  # the reaper must never take the worker down
                log.exception("job reaper failed")
            stop.wait(every)

    threading.Thread(target=loop, name="boxal-reaper", daemon=True).start()
