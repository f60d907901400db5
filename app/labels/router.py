from __future__ import annotations

import logging

from fastapi import APIRouter, Depends

from app.auth.deps import Admin, InProject, current_principal
from app.deps import EnqueuerDep, Paging, ReadSession, WriteSession
from app.enqueue import TASK_RUN_ROUND
from app.errors import Unavailable
from app.labels import service
from app.labels.schemas import LabelEventPublic, LabelsIn, LabelsOut
from app.metrics import ANSWERED
from app.models import utcnow
from app.projects.service import get_project, latest_round
from app.rounds import service as rounds_service
from app.schemas import ERRORS, Page, ProjectId

log = logging.getLogger(__name__)
router = APIRouter(
    prefix="/v1/projects/{project_id}/labels",
    tags=["labels"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)


@router.post("", response_model=LabelsOut)
def answer_queries(
    project_id: ProjectId, body: LabelsIn, session: WriteSession, enqueuer: EnqueuerDep, principal: InProject
) -> LabelsOut:
    """Record answers. All or nothing; idempotent per query_id; may close the round (round_size).

    Annotator tokens answer only their own leases.
    """
    project = get_project(session, project_id)
    results = service.answer(
        session, project, body.labels, utcnow(), only_annotator=None if principal.is_admin else principal.name
    )
    started = rounds_service.maybe_close_round(session, project)
    number = started[0].number if started else latest_round(session, project.id).number
    session.commit()
    ANSWERED.inc(sum(r.status == "recorded" for r in results))
    if started:
        try:
            enqueuer.send(TASK_RUN_ROUND, [started[1].id])
        except Unavailable:
            # the answers are committed; the queued job is sent again by a worker's reaper or POST /rounds
            log.warning("round %s recorded but not enqueued: broker unavailable", number)
    return LabelsOut(labels=results, round=number, round_started=started is not None)


@router.get("", response_model=Page[LabelEventPublic])
def list_label_events(
    project_id: ProjectId, session: ReadSession, page: Paging, _: Admin
) -> Page[LabelEventPublic]:
    """The append-only event log: every answer and every box it resolved, oldest first."""
    get_project(session, project_id)
    events = service.list_events(session, project_id, limit=page.limit, cursor=page.cursor)
    next_cursor = events[-1].id if len(events) == page.limit else None
    items = [LabelEventPublic.model_validate(e, from_attributes=True) for e in events]
    return Page[LabelEventPublic](items=items, next_cursor=next_cursor)
