"""Where a job goes next from wherever its round stands (a start, or recovery after a crash), and
which jobs went silent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.jobs import service as jobs
from worker.context import WorkerContext, holder_gone
from worker.stages.job import Stage, load
from worker.stages.score import plan_scoring

Next = tuple[Stage, list[Any]]


def route(ctx: WorkerContext, job_id: str) -> list[Next]:
    """The stages (with their arguments) that move the job on; [] when it is done."""
    ref = load(ctx, job_id)
    if ref.job_state in ("succeeded", "failed"):
        return []
    if ref.state == "training":
        return [(Stage.TRAIN, [job_id])]
    if ref.state == "scoring":
        total, todo = plan_scoring(ctx, ref)
        if not todo:
            return [(Stage.RANK, [job_id])]
        return [(Stage.SCORE, [job_id, index, total]) for index in todo]
    if ref.state in ("open", "closed"):
        if ref.metrics is None:
            return [(Stage.EVALUATE, [job_id])]
        with ctx.db.transaction() as session:
            jobs.job_succeeded(session, job_id)
    return []


def stale_jobs(ctx: WorkerContext, waiting: set[str] | None) -> list[str]:
    """Jobs to send again (app/jobs/service.py, take_back_stale): their holding process on this machine is
    gone, or they went silent for job_stale_s with no message of theirs waiting in ``waiting``; their
    claim is released."""
    with ctx.db.transaction() as session:
        return jobs.take_back_stale(
            session, timedelta(seconds=ctx.settings.job_stale_s), holder_gone=holder_gone, waiting=waiting
        )
