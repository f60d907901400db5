"""What the labels looked like when a round closed: its counts and the training set of the next model.

Round N+1's model trains on every label event with id <= the snapshot taken when round N closed;
answers that keep arriving while it trains count toward the round after. Per DESIGN.md:
- L_I: pool images fully labeled or holding at least one labeled box (as of the snapshot);
- on each: labeled boxes are targets of weight 1; predicted boxes still unlabeled (as of the
  snapshot) are noisy targets, except on fully labeled images; background/duplicate answers are not
  targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from app.models import Box, Image, LabelEvent


@dataclass(frozen=True)
class Counts:
    boxes_obtained: int
    images_labeled: int
    queries_answered: int
    seconds: float


@dataclass
class TrainingBox:
    box_id: int
    bbox: list[float]
    label: int
    noisy: bool


@dataclass
class TrainingImage:
    image_id: int
    path: str
    width: int
    height: int
    boxes: list[TrainingBox] = field(default_factory=list)


def _known(column, snapshot: int):  # type: ignore[no-untyped-def]
    """An event column that is null (imported) or at/before the snapshot."""
    return or_(column.is_(None), column <= snapshot)


def labeled_images_query(project_id: int, snapshot: int):  # type: ignore[no-untyped-def]
    with_labels = select(Box.image_id).where(
        Box.project_id == project_id, Box.status == "labeled", _known(Box.answer_event_id, snapshot)
    )
    return select(Image).where(
        Image.project_id == project_id,
        Image.split == "pool",
        or_(
            and_(Image.fully_labeled, _known(Image.labeled_event_id, snapshot)),
            Image.id.in_(with_labels),
        ),
    )


def counts(session: Session, project_id: int, snapshot: int) -> Counts:
    boxes = session.scalar(
        select(func.count())
        .select_from(Box)
        .join(Image, Image.id == Box.image_id)
        .where(
            Box.project_id == project_id,
            Box.status == "labeled",
            Image.split == "pool",
            _known(Box.answer_event_id, snapshot),
        )
    )
    images = session.scalar(
        select(func.count()).select_from(labeled_images_query(project_id, snapshot).subquery())
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


def training_set(session: Session, project_id: int, snapshot: int) -> list[TrainingImage]:
    images = {
        image.id: (image, image.fully_labeled and (image.labeled_event_id or 0) <= snapshot)
        for image in session.scalars(labeled_images_query(project_id, snapshot).order_by(Image.id))
    }
    out = {
        image_id: TrainingImage(image_id, image.path, image.width, image.height)
        for image_id, (image, _) in images.items()
    }
    ids = list(images)
    for start in range(0, len(ids), 500):
        stmt = select(Box).where(Box.image_id.in_(ids[start : start + 500])).order_by(Box.image_id, Box.id)
        for box in session.scalars(stmt):
            answered_before = box.answer_event_id is None or box.answer_event_id <= snapshot
            if box.status == "labeled" and answered_before:
                out[box.image_id].boxes.append(TrainingBox(box.id, box.bbox, box.label, noisy=False))
                continue
            if box.source != "predicted" or images[box.image_id][1]:
                continue  # annotator boxes drawn after the snapshot; leftovers on complete images
            unanswered_then = box.status == "unlabeled" or not answered_before
            if unanswered_then:
                original = box.predicted or {"bbox": box.bbox, "label": box.label}
                out[box.image_id].boxes.append(
                    TrainingBox(box.id, list(original["bbox"]), int(original["label"]), noisy=True)
                )
    return list(out.values())
