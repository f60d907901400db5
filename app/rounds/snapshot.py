"""What the labels looked like when a round closed: the snapshot (a label event id) and its counts.

Round N+1's model trains on every label event with id <= the snapshot taken when round N closed
(training_set.py builds its records); answers that keep arriving while it trains count toward the
round after.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app.models import Box, Image, LabelEvent


@dataclass(frozen=True)
class Counts:
    boxes_obtained: int
    images_labeled: int
    queries_answered: int
    seconds: float


def _known(column, snapshot: int):  # type: ignore[no-untyped-def]
    """An event column that is null (imported) or at/before the snapshot."""
    return or_(column.is_(None), column <= snapshot)


ANSWERED = ("labeled", "background", "duplicate")


def labeled_images_query(project_id: int, snapshot: int, *, answered: bool = True):  # type: ignore[no-untyped-def]
    """The training images L_I as of ``snapshot``: fully labeled pool images, and those with an answered
    box (``answered``: any answer, the paper's rule) or with a labeled box (``answered=False``)."""
    statuses = ANSWERED if answered else ("labeled",)
    with_labels = select(Box.image_id).where(
        Box.project_id == project_id, Box.status.in_(statuses), _known(Box.answer_event_id, snapshot)
    )
    return select(Image).where(
        Image.project_id == project_id,
        Image.split == "pool",
        or_(
            and_(Image.fully_labeled, _known(Image.labeled_event_id, snapshot)),
            Image.id.in_(with_labels),
        ),
    )


def counts(session: Session, project_id: int, snapshot: int, *, answered_images: bool = True) -> Counts:
    """Boxes obtained, training images (as ``labeled_images_query`` counts them), answers and seconds."""
    boxes = session.scalar(_labeled_pool_boxes(project_id).where(_known(Box.answer_event_id, snapshot)))
    images = session.scalar(
        select(func.count()).select_from(
            labeled_images_query(project_id, snapshot, answered=answered_images).subquery()
        )
    )
    answered, ms = session.execute(
        select(func.count(), func.coalesce(func.sum(LabelEvent.duration_ms), 0)).where(
            LabelEvent.project_id == project_id, LabelEvent.kind == "answer", LabelEvent.id <= snapshot
        )
    ).one()
    return Counts(int(boxes or 0), int(images or 0), int(answered or 0), float(ms or 0) / 1000.0)


def last_event_id(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.max(LabelEvent.id)).where(LabelEvent.project_id == project_id)) or 0
    )


def answers_since(session: Session, project_id: int, snapshot: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                LabelEvent.project_id == project_id, LabelEvent.kind == "answer", LabelEvent.id > snapshot
            )
        )
        or 0
    )


def boxes_since(session: Session, project_id: int, snapshot: int) -> int:
    """Boxes obtained after the snapshot: labeled pool boxes answered since (box answers and image
    answers' drawn boxes; background and duplicate answers obtain none)."""
    return int(session.scalar(_labeled_pool_boxes(project_id).where(Box.answer_event_id > snapshot)) or 0)


def _labeled_pool_boxes(project_id: int):  # type: ignore[no-untyped-def]
    """Counts the labeled boxes on pool images: the boxes obtained."""
    return (
        select(func.count())
        .select_from(Box)
        .join(Image, Image.id == Box.image_id)
        .where(Box.project_id == project_id, Box.status == "labeled", Image.split == "pool")
    )
