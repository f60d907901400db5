"""What every answer writes or checks, whatever its unit: its label event, the lease it came under, the
event id on the boxes it answered."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from app.errors import Conflict
from app.labels.schemas import LabelIn
from app.models import Box, Image, LabelEvent, Project, Query


def event_for(
    project: Project,
    query: Query,
    box: Box | None,
    action: str,
    item: LabelIn,
    round_number: int,
    before: dict | None,
    after: dict | None,
    now: datetime,
) -> LabelEvent:
    return LabelEvent(
        project_id=project.id,
        kind="answer",
        query_id=query.id,
        box_id=box.id if box is not None else None,
        image_id=query.image_id,
        annotator=query.annotator,
        action=action,
        before=before,
        after=after,
        duration_ms=item.duration_ms,
        round=round_number,
        created_at=now,
    )


def check_lease(target: Box | Image, query: Query, now: datetime, i: int, what: str) -> None:
    held_by_other = (
        target.lease_query_id is not None
        and target.lease_query_id != query.id
        and target.lease_expires_at is not None
        and target.lease_expires_at > now
    )
    if held_by_other:
        raise Conflict(
            f"labels[{i}]: the lease of query {query.id} expired and {what} is now leased to another "
            "annotator"
        )


def stamp(session: Session, event: LabelEvent) -> None:
    box = session.get(Box, event.box_id)
    if box is not None:
        box.answer_event_id = event.id
