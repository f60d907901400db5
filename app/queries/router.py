from __future__ import annotations

from fastapi import APIRouter, Depends, Response, status

from app.auth.deps import InProject, current_principal
from app.deps import SettingsDep, WriteSession
from app.metrics import LEASED
from app.models import utcnow
from app.projects.service import get_project
from app.queries import seeding, service
from app.queries.schemas import LeaseIn, LeaseOut
from app.schemas import ERRORS, ProjectId, QueryId

router = APIRouter(
    prefix="/v1/projects/{project_id}/queries",
    tags=["queries"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)


@router.post("", response_model=LeaseOut)
def lease_queries(
    project_id: ProjectId, body: LeaseIn, session: WriteSession, settings: SettingsDep, principal: InProject
) -> LeaseOut:
    """Lease up to k of the highest-ranked queries that nobody holds (an empty list when none are left).

    Without ``unit`` the project decides: a box project whose free box queries run out serves image
    queries for the rest (the round's ``notice`` says why). With an annotator token the lease is recorded
    under the token's name, whatever ``annotator`` says.
    """
    project = get_project(session, project_id)
    annotator = body.annotator if principal.is_admin else principal.name
    queries = service.lease(
        session, project, k=body.k, annotator=annotator, unit=body.unit, now=utcnow(), settings=settings
    )
    reason = None if queries else seeding.why_empty(session, project)
    session.commit()
    LEASED.inc(len(queries))
    return LeaseOut(queries=queries, reason=reason)


@router.delete("/{query_id}", status_code=status.HTTP_204_NO_CONTENT)
def release_query(
    project_id: ProjectId, query_id: QueryId, session: WriteSession, principal: InProject
) -> Response:
    """Give a lease back unanswered; its box returns to the queue."""
    get_project(session, project_id)
    service.release(
        session, project_id, query_id, only_annotator=None if principal.is_admin else principal.name
    )
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
