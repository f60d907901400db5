"""A round's job as the stages see it: the round they load, the claim on it, heartbeats, Skip.

Every stage is a function over ids (a job id, a shard index) that loads what it needs, opens its own
transactions, and is idempotent: run twice, it writes nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from app.jobs import service as jobs
from app.models import Project, utcnow
from app.projects.schemas import ProjectSettings
from app.projects.service import project_settings
from app.rounds.service import get_round, round_unit
from worker import acquisition, limits
from worker.context import WorkerContext


class Stage(StrEnum):
    """The stages of a round, in order; each one a Celery task (worker/tasks.py)."""

    TRAIN = "train"
    SCORE = "score"
    RANK = "rank"
    EVALUATE = "evaluate"


class Skip(Exception):
    """Nothing for this task to do: the stage is past, or a live worker holds the job."""


@dataclass(frozen=True)
class RoundRef:
    """A job's round and project, read once at the start of a stage."""

    job_id: str
    job_state: str
    round_id: int
    number: int
    state: str
    project_id: int
    classes: list[str]  # the round's own (the project's when it started), not the project's now
    settings: ProjectSettings
    model_version: str | None
    snapshot_event_id: int
    metrics: dict[str, Any] | None

    @property
    def new_model_version(self) -> str:
        return f"p{self.project_id}-r{self.number}-{self.job_id[:8]}"

    def strategy(self) -> acquisition.Strategy:
        """The project's acquisition strategy for this round."""
        settings = self.settings
        params = acquisition.Params(
            seed=settings.seed, salt=self.number, reduction=settings.reduction, budget=settings.round_size
        )
        return acquisition.build(settings.strategy, params)


def load(ctx: WorkerContext, job_id: str) -> RoundRef:
    with ctx.db.transaction(write=False) as session:
        job = jobs.get_job(session, job_id)
        if job.round_id is None:
            raise Skip(f"job {job_id} is not a round job")
        round_ = get_round(session, job.round_id)
        project = session.get(Project, round_.project_id)
        assert project is not None
        settings = project_settings(project)
        if settings.unit == "auto":  # the round's own unit: every stage then works as for a fixed one
            settings = settings.model_copy(update={"unit": round_unit(project, round_)})
        return RoundRef(
            job.id,
            job.state,
            round_.id,
            round_.number,
            round_.state,
            project.id,
            list(round_.classes if round_.classes is not None else project.classes),
            settings,
            round_.model_version,
            round_.snapshot_event_id or 0,
            round_.metrics,
        )


def claim(ctx: WorkerContext, job_id: str, stage: str) -> None:
    """Take the job for a single-worker stage (training), unless a live worker already holds it."""
    stale = timedelta(seconds=ctx.settings.job_stale_s)
    with ctx.db.transaction() as session:
        job = jobs.get_job(session, job_id, for_update=True)
        if job.state in ("succeeded", "failed"):
            raise Skip(f"job {job_id} is {job.state}")
        holder_alive = (
            job.worker not in (None, ctx.token)
            and job.heartbeat_at is not None
            and utcnow() - job.heartbeat_at < stale
            and (job.progress or {}).get("stage") == stage
        )
        if holder_alive:
            raise Skip(f"job {job_id} is being {stage} by {job.worker}")
        jobs.job_started(session, job_id, ctx.token)
        jobs.job_progress(session, job_id, stage=stage)


def running(ctx: WorkerContext, job_id: str, stage: str) -> None:
    """Mark a job running at a multi-worker stage (scoring, ranking, evaluating)."""
    with ctx.db.transaction() as session:
        job = jobs.get_job(session, job_id, for_update=True)
        if job.state in ("succeeded", "failed"):
            raise Skip(f"job {job_id} is {job.state}")
        if job.state == "queued":
            jobs.job_started(session, job_id, ctx.token)
        jobs.job_progress(session, job_id, stage=stage)


def progress(ctx: WorkerContext, job_id: str, **fields: Any) -> None:
    """Report progress (the job's heartbeat); past the task's soft time limit, stop it (worker/limits.py)."""
    limits.check()
    with ctx.db.transaction() as session:
        jobs.job_progress(session, job_id, **fields)
