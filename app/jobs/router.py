from __future__ import annotations

from fastapi import APIRouter, Depends

from app.auth.deps import Authenticated, current_principal
from app.deps import ReadSession
from app.errors import NotFound
from app.jobs import service
from app.jobs.schemas import JobPublic
from app.schemas import ERRORS

router = APIRouter(
    prefix="/v1/jobs", tags=["jobs"], responses=ERRORS, dependencies=[Depends(current_principal)]
)


@router.get("/{job_id}", response_model=JobPublic)
def get_job_route(job_id: str, session: ReadSession, principal: Authenticated) -> JobPublic:
    """A background job: state, progress (stage, epoch, images scored), error."""
    job = service.get_job(session, job_id)
    if not principal.may_see(job.project_id):
        raise NotFound(f"job {job_id} does not exist")
    return service.to_public(session, job)
