from __future__ import annotations

from fastapi import APIRouter, Depends

from app.auth.deps import Authenticated, current_principal
from app.deps import ReadSession
from app.errors import NotFound
from app.jobs.schemas import JobPublic
from app.models import Round
from app.rounds.service import get_job
from app.schemas import ERRORS

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], responses=ERRORS, dependencies=[Depends(current_principal)]
)


def to_public(session: ReadSession, job_id: str) -> JobPublic:
    job = get_job(session, job_id)
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
    )


@router.get("/{job_id}", response_model=JobPublic)
def get_job_route(job_id: str, session: ReadSession, principal: Authenticated) -> JobPublic:
    """A background job: state, progress (stage, epoch, images scored), error."""
    job = to_public(session, job_id)
    if not principal.may_see(job.project_id):
        raise NotFound(f"job {job_id} does not exist")
    return job
