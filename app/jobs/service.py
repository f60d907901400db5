"""Background jobs and their shards: what a worker reports while it runs one, and how a job is found.

A job runs one round (``kind`` "round"): queued -> running -> succeeded | failed. Workers report a
heartbeat with every progress update; a job whose holding process died, or whose heartbeat is older than
``job_stale_s`` while no message for it waits, is taken back (``take_back_stale``) and sent again.
Multi-worker stages split their work into shards, one row each, so that a stage run twice does nothing
twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.db import is_sqlite, load
from app.errors import NotFound
from app.jobs.schemas import JobPublic
from app.models import Job, Round, Shard, utcnow

ROUND_JOB = "round"


def get_job(session: Session, job_id: str, *, for_update: bool = False) -> Job:
    job = load(session, Job, job_id, for_update=for_update)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def new_round_job(session: Session, round_: Round) -> Job:
    """A queued job that will run ``round_``; the caller commits, then enqueues it."""
    job = Job(
        id=str(uuid.uuid4()),
        project_id=round_.project_id,
        round_id=round_.id,
        kind=ROUND_JOB,
        state="queued",
        progress={"stage": "queued"},
    )
    session.add(job)
    session.flush()
    round_.job_id = job.id
    return job


def job_started(session: Session, job_id: str, worker: str) -> Job:
    job = get_job(session, job_id, for_update=True)
    now = utcnow()
    job.state = "running"
    job.attempts += 1
    job.worker = worker
    job.started_at = job.started_at or now
    job.heartbeat_at = now
    job.error = None
    session.flush()
    return job


def job_progress(session: Session, job_id: str, **progress: Any) -> None:
    """Merge ``progress`` into the job's and beat its heartbeat."""
    job = get_job(session, job_id, for_update=True)
    job.progress = {**(job.progress or {}), **progress}
    job.heartbeat_at = utcnow()
    session.flush()


def job_succeeded(session: Session, job_id: str) -> None:
    job = get_job(session, job_id, for_update=True)
    job.state = "succeeded"
    job.finished_at = utcnow()
    job.progress = {**(job.progress or {}), "stage": "done", "fraction": 1.0}
    session.flush()


def job_failed(session: Session, job_id: str, error: str) -> None:
    """The job stops with a readable error, shown on its round too. A round that failed before it opened
    becomes retryable and the old ranking keeps serving; an open one (a failed evaluation) keeps serving
    its own ranking."""
    job = get_job(session, job_id, for_update=True)
    job.state = "failed"
    job.error = error[:4000]
    job.finished_at = utcnow()
    if job.round_id is not None:
        round_ = load(session, Round, job.round_id, for_update=True)
        if round_ is not None:
            round_.error = job.error
            if round_.state in ("training", "scoring"):
                round_.state = "failed"
    session.flush()


MAX_LOSSES = 5  # a job whose holding process dies this often fails (each death was a kill or the OOM killer)


def take_back_stale(
    session: Session,
    stale_after: timedelta,
    now: datetime | None = None,
    holder_gone: Callable[[str], bool] | None = None,
    waiting: set[str] | None = None,
) -> list[str]:
    """Jobs queued or running that need their message sent again; their claim is released.

    A job needs it when its holding process is known to be gone (``holder_gone(job.worker)``: at once), or
    when it has shown no sign of life (heartbeat, else creation) for ``stale_after`` and was not sent again
    within that time either. Never while a message for it waits in the broker (``waiting``: the job ids of
    the messages queued, or None where the broker cannot be read), so that a job queued behind a long
    round is not sent twice. Its heartbeat is left as it was: watchers judge progress by it. A job whose
    holder died ``MAX_LOSSES`` times fails, saying so, instead of being run again."""
    now = now or utcnow()
    stmt = select(Job).where(Job.state.in_(("queued", "running")))
    if not is_sqlite(session):
        stmt = stmt.with_for_update(skip_locked=True, key_share=True)
    again: list[str] = []
    for job in session.scalars(stmt):
        lost = holder_gone is not None and job.worker is not None and holder_gone(job.worker)
        silent = (job.heartbeat_at or job.created_at) < now - stale_after
        if not (lost or silent) or (waiting is not None and job.id in waiting):
            continue
        if not lost and job.sent_at is not None and job.sent_at >= now - stale_after:
            continue  # sent again a moment ago: give a worker the time to take it
        if lost:
            job.losses += 1
            if job.losses >= MAX_LOSSES:
                job_failed(
                    session,
                    job.id,
                    f"the worker process running it died {job.losses} times (killed, or out of memory: see "
                    "the worker's log); start the round again once that is fixed",
                )
                continue
        job.worker = None
        job.sent_at = now
        again.append(job.id)
    session.flush()
    return again


# --- shards --------------------------------------------------------------------------------------


def plan_shards(session: Session, round_id: int, stage: str, total: int) -> None:
    existing = session.scalar(select(func.count()).where(Shard.round_id == round_id, Shard.stage == stage))
    if existing:
        return
    session.add_all(Shard(round_id=round_id, stage=stage, index=i, total=total) for i in range(total))
    session.flush()


def planned_shards(session: Session, round_id: int, stage: str) -> int | None:
    """How many shards the stage was split into, or None if it has not been planned."""
    return session.scalar(select(Shard.total).where(Shard.round_id == round_id, Shard.stage == stage))


def shard_finished(
    session: Session, round_id: int, stage: str, index: int, worker: str | None = None
) -> bool:
    """Mark one shard done (by ``worker``); True when every shard of the stage is done (hand on then)."""
    values: dict[str, Any] = {"done": True}
    if worker is not None:
        values["worker"] = worker
    session.execute(
        update(Shard)
        .where(Shard.round_id == round_id, Shard.stage == stage, Shard.index == index)
        .values(**values)
    )
    session.flush()
    left = session.scalar(
        select(func.count()).where(Shard.round_id == round_id, Shard.stage == stage, Shard.done.is_(False))
    )
    return left == 0


def shards_done(session: Session, round_id: int, stage: str) -> set[int]:
    stmt = select(Shard.index).where(Shard.round_id == round_id, Shard.stage == stage, Shard.done)
    return set(session.scalars(stmt))


def scoring_backlog(session: Session) -> dict[str, int]:
    """Scoring shards of every round now scoring: how many are done and how many pending."""
    rows = session.execute(
        select(Shard.done, func.count())
        .join(Round, Round.id == Shard.round_id)
        .where(Round.state == "scoring", Shard.stage == "score")
        .group_by(Shard.done)
    ).all()
    counts = {"done": 0, "pending": 0}
    for done, count in rows:
        counts["done" if done else "pending"] += count
    return counts


# --- reading ---------------------------------------------------------------------------------------


def to_public(session: Session, job: Job) -> JobPublic:
    round_ = session.get(Round, job.round_id) if job.round_id is not None else None
    return JobPublic(
        id=job.id,
        kind=job.kind,
        state=job.state,  # type: ignore[arg-type]
        progress=job.progress or {},
        error=job.error,
        project_id=job.project_id,
        round=round_.number if round_ is not None else None,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        heartbeat_at=job.heartbeat_at,
        losses=job.losses,
    )
