"""Celery tasks: each wires one stage of a round (worker/stages/) and sends the next. Arguments are ids.

Faults: transient ones (database or broker unreachable) retry with backoff; anything else marks the job
failed with a readable error, leaving the round retryable and the previous ranking serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.exc import InterfaceError, OperationalError

from app.enqueue import QUEUE, TASK_RUN_ROUND, waiting_jobs
from app.jobs import service as jobs
from app.metrics import STAGE_SECONDS
from app.settings import get_settings
from worker import limits
from worker.celery_app import app
from worker.context import context
from worker.stages import evaluate, rank, route, score, train
from worker.stages.job import Skip, Stage, load

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError, BrokerError, ConnectionError, TimeoutError)
MAX_RETRIES = 5
TASK_NAMES = {stage: f"boxal.round.{stage.value}" for stage in Stage}
COMMON = {"bind": True, "acks_late": True, "reject_on_worker_lost": True}


def send(stage: Stage | None, args: list[Any]) -> None:
    """Send a stage's task (None: the job's router), with its time limit from the settings."""
    settings = get_settings()
    limit = settings.train_time_limit_s if stage is Stage.TRAIN else settings.task_time_limit_s
    app.send_task(
        TASK_NAMES[stage] if stage is not None else TASK_RUN_ROUND,
        args=args,
        queue=QUEUE,
        soft_time_limit=limit,
        time_limit=limit + 60,
    )


def _soft_limit(task: Task, stage: str) -> float:
    """The task's soft time limit: its message's (``send``), else the settings' for its stage."""
    hard_and_soft = task.request.timelimit or (None, None)
    if hard_and_soft[1]:
        return float(hard_and_soft[1])
    settings = get_settings()
    return float(settings.train_time_limit_s if stage == "training" else settings.task_time_limit_s)


def _stage(task: Task, job_id: str, stage: str, body: Callable[..., Any], *args: Any) -> Any:
    soft = _soft_limit(task, stage)

    def stuck() -> None:
        _fail(job_id, f"{stage}: stuck {limits.HARD_GRACE_S:.0f} s past its time limit of {soft:.0f} s")

    try:
        with STAGE_SECONDS.labels(stage).time(), limits.limited(soft, stuck):
            return body(context(), job_id, *args)
    except Skip as skip:
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
        jobs.job_failed(session, job_id, error)


@app.task(name=TASK_RUN_ROUND, **COMMON)
def run_round(self: Task, job_id: str) -> None:
    """Start or resume a round's job from wherever its round stands."""
    for stage, args in _stage(self, job_id, "run", route.route) or []:
        send(stage, args)


@app.task(name=TASK_NAMES[Stage.TRAIN], **COMMON)
def train_round(self: Task, job_id: str) -> None:
    if _stage(self, job_id, "training", train.train_round) is not None:
        send(None, [job_id])  # on to scoring


@app.task(name=TASK_NAMES[Stage.SCORE], **COMMON)
def score_shard(self: Task, job_id: str, index: int, total: int) -> None:
    if _stage(self, job_id, "scoring", score.score_shard, index, total):
        send(Stage.RANK, [job_id])  # the last shard hands the round on


@app.task(name=TASK_NAMES[Stage.RANK], **COMMON)
def rank_round(self: Task, job_id: str) -> None:
    _stage(self, job_id, "ranking", rank.rank_round)
    if load(context(), job_id).state == "open":
        send(Stage.EVALUATE, [job_id])


@app.task(name=TASK_NAMES[Stage.EVALUATE], **COMMON)
def evaluate_round(self: Task, job_id: str) -> None:
    _stage(self, job_id, "evaluating", evaluate.evaluate_round)


def reap() -> list[str]:
    """Send again the jobs whose holding process died or that went silent with no message of theirs
    waiting (never one already waiting: no pile of duplicates); returns their ids."""
    stale = route.stale_jobs(context(), waiting_jobs(app))
    for job_id in stale:
        log.warning("job %s lost its worker or went silent; sending it again", job_id)
        send(None, [job_id])
    return stale
