"""Celery tasks by name. Arguments are ids; each task does one stage (worker/pipeline.py) and sends the
next. Faults: transient ones (database or broker unreachable) retry with backoff; anything else marks
the job failed with a readable error, leaving the round retryable and the previous ranking serving."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

from app.enqueue import QUEUE, TASK_RUN_ROUND
from app.rounds import service as rounds
from app.settings import get_settings
from worker import pipeline
from worker.celery_app import app
from worker.context import context

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, BrokerError, ConnectionError, TimeoutError)
MAX_RETRIES = 5


def send(name: str, args: list[Any]) -> None:
    app.send_task(name, args=args, queue=QUEUE)


def _stage(task: Task, job_id: str, stage: str, body: Any, *args: Any) -> Any:
    try:
        return body(context(), job_id, *args)
    except pipeline.Skip as skip:
        log.info("%s %s skipped: %s", stage, job_id, skip)
        return None
    except TRANSIENT as exc:
        if task.request.retries < MAX_RETRIES:
            raise task.retry(exc=exc, countdown=min(60, 2 ** (task.request.retries + 1))) from exc
        _fail(job_id, f"{stage}: gave up after {MAX_RETRIES} retries: {type(exc).__name__}: {exc}")
    except SoftTimeLimitExceeded:
        _fail(job_id, f"{stage}: took longer than its time limit")
    except Exception as exc:
        log.exception("%s %s failed", stage, job_id)
        _fail(job_id, f"{stage}: {type(exc).__name__}: {exc}")
    return None


def _fail(job_id: str, error: str) -> None:
    with context().db.transaction() as session:
        rounds.job_failed(session, job_id, error)


settings = get_settings()
COMMON = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "soft_time_limit": settings.task_time_limit_s,
    "time_limit": settings.task_time_limit_s + 60,
}


@app.task(name=TASK_RUN_ROUND, **COMMON)
def run_round(self: Task, job_id: str) -> None:
    """Start or resume a round's job from wherever its round stands."""
    for name, args in _stage(self, job_id, "run", pipeline.route) or []:
        send(name, args)


@app.task(
    name=pipeline.TASK_TRAIN,
    **{
        **COMMON,
        "soft_time_limit": settings.train_time_limit_s,
        "time_limit": settings.train_time_limit_s + 60,
    },
)
def train_round(self: Task, job_id: str) -> None:
    if _stage(self, job_id, "training", pipeline.train_round) is not None:
        send(TASK_RUN_ROUND, [job_id])  # on to scoring


@app.task(name=pipeline.TASK_SCORE, **COMMON)
def score_shard(self: Task, job_id: str, index: int, total: int) -> None:
    if _stage(self, job_id, "scoring", pipeline.score_shard, index, total):
        send(pipeline.TASK_RANK, [job_id])  # the last shard hands the round on


@app.task(name=pipeline.TASK_RANK, **COMMON)
def rank_round(self: Task, job_id: str) -> None:
    _stage(self, job_id, "ranking", pipeline.rank_round)
    if pipeline.load(context(), job_id).state == "open":
        send(pipeline.TASK_EVALUATE, [job_id])


@app.task(name=pipeline.TASK_EVALUATE, **COMMON)
def evaluate_round(self: Task, job_id: str) -> None:
    _stage(self, job_id, "evaluating", pipeline.evaluate_round)


def reap() -> list[str]:
    """Re-send the jobs whose worker went silent; returns their ids."""
    stale = pipeline.stale_jobs(context())
    for job_id in stale:
        log.warning("job %s went silent; running it again", job_id)
        send(TASK_RUN_ROUND, [job_id])
    return stale
