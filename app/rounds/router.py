from __future__ import annotations

from fastapi import APIRouter, Depends, status

from app.auth.deps import Admin, InProject, current_principal
from app.deps import EnqueuerDep, Paging, ReadSession, WriteSession
from app.enqueue import TASK_RUN_ROUND
from app.errors import Unavailable
from app.jobs import service as jobs
from app.projects.service import get_project
from app.rounds import service
from app.rounds.schemas import Curve, RoundPublic, RoundStart, RoundStarted
from app.schemas import ERRORS, Page, ProjectId

router = APIRouter(
    prefix="/v1/projects/{project_id}",
    tags=["rounds"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)


@router.post("/rounds", status_code=status.HTTP_202_ACCEPTED, response_model=RoundStarted)
def start_round(
    project_id: ProjectId,
    session: WriteSession,
    enqueuer: EnqueuerDep,
    _: Admin,
    body: RoundStart | None = None,
) -> RoundStarted:
    """Close the current round and start training the next (or run a failed round again). An open round
    that still has queries to serve and has not received its round_size is closed only with force."""
    project = get_project(session, project_id, for_update=True)
    round_, job = service.start_next_round(session, project, force=body is not None and body.force)
    session.commit()
    try:
        enqueuer.send(TASK_RUN_ROUND, [job.id])
    except Unavailable as exc:
        jobs.job_failed(session, job.id, f"not started: {exc.detail}")
        session.commit()
        raise Unavailable(
            f"round {round_.number} could not be started: {exc.detail}; POST again to retry"
        ) from exc
    return RoundStarted(round=round_.number, job_id=job.id)


@router.get("/rounds", response_model=Page[RoundPublic])
def list_rounds(project_id: ProjectId, session: ReadSession, page: Paging, _: InProject) -> Page[RoundPublic]:
    get_project(session, project_id)
    rows = service.list_rounds(session, project_id, limit=page.limit, cursor=page.cursor)
    next_cursor = rows[-1].number if len(rows) == page.limit else None
    return Page[RoundPublic](items=[service.to_public(r) for r in rows], next_cursor=next_cursor)


@router.get("/curve", response_model=Curve)
def get_curve(project_id: ProjectId, session: ReadSession, page: Paging, _: InProject) -> Curve:
    """Per evaluated round: boxes obtained, queries answered, annotator seconds, mAP, mAP@0.5."""
    get_project(session, project_id)
    points = service.curve(session, project_id, limit=page.limit, cursor=page.cursor)
    return Curve(points=points, next_cursor=points[-1].round if len(points) == page.limit else None)
