"""Answers that complete an image: an image query's boxes drawn from scratch (``label_all``) and an image
review's verdicts on the model's boxes plus the boxes it missed (``review``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid
from app.labels.records import check_lease, event_for, stamp
from app.labels.resolve import box_state, resolve_predictions_on_complete_image
from app.labels.schemas import LabelIn, LabelResult
from app.models import Box, Image, LabelEvent, Project, Query


def answer_image(
    session: Session,
    project: Project,
    query: Query,
    image: Image,
    item: LabelIn,
    class_index: dict[str, int],
    now: datetime,
    i: int,
) -> LabelResult:
    _check_open(image, query, now, i)
    created = _drawn(session, project, query, image, item, class_index, now)
    after = {"boxes": [{"box_id": b.id, "bbox": b.bbox, "label": b.label} for b in created]}
    event = event_for(project, query, None, "label_all", item, project.serving_round, None, after, now)
    resolved = _complete(session, project, query, image, event, created)
    return LabelResult(
        query_id=query.id, status="recorded", event_id=event.id, box_ids=[b.id for b in created],
        resolved_box_ids=resolved,
    )  # fmt: skip


def _check_open(image: Image, query: Query, now: datetime, i: int) -> None:
    """An image is completed once, under its query's lease (or a lapsed one nobody else holds)."""
    if image.fully_labeled:
        raise Conflict(f"labels[{i}]: image {image.id} is already fully labeled")
    check_lease(image, query, now, i, f"image {image.id}")


def _complete(
    session: Session, project: Project, query: Query, image: Image, event: LabelEvent, answered: list[Box]
) -> list[int]:
    """Record ``event`` completing ``image`` (an image or review answer): the image is fully labeled, the
    ``answered`` boxes carry the event, and the predictions nobody answered are resolved (their ids)."""
    session.add(event)
    image.fully_labeled = True
    image.lease_query_id = None
    image.lease_expires_at = None
    derived = resolve_predictions_on_complete_image(
        session, image, annotator=query.annotator, round_number=project.serving_round, query_id=query.id
    )
    session.flush()
    image.labeled_event_id = event.id
    for box in answered:
        box.answer_event_id = event.id
    for other in derived:
        stamp(session, other)
    return [e.box_id for e in derived if e.box_id is not None]


def _drawn(
    session: Session,
    project: Project,
    query: Query,
    image: Image,
    item: LabelIn,
    class_index: dict[str, int],
    now: datetime,
) -> list[Box]:
    """The boxes an image or review answer drew, as labeled annotator boxes (flushed: ids assigned)."""
    created = [
        Box(
            project_id=project.id,
            image_id=image.id,
            source="annotator",
            status="labeled",
            x1=drawn.bbox[0],
            y1=drawn.bbox[1],
            x2=drawn.bbox[2],
            y2=drawn.bbox[3],
            label=class_index[drawn.label],
            round_queried=query.round,
            round_answered=project.serving_round,
            created_at=now,
        )
        for drawn in item.boxes or []
    ]
    session.add_all(created)
    session.flush()
    return created


def answer_review(
    session: Session,
    project: Project,
    query: Query,
    image: Image,
    item: LabelIn,
    class_index: dict[str, int],
    now: datetime,
    i: int,
) -> LabelResult:
    """A review: each prediction named is accepted, fixed or deleted, the missing objects are drawn, and
    the image is complete (predictions nobody named are resolved as an image query's leftovers)."""
    _check_open(image, query, now, i)
    reviewed = item.reviewed or []
    found = {
        box.id: box
        for box in session.scalars(
            select(Box).where(Box.id.in_([r.box_id for r in reviewed])).order_by(Box.id)
        )
    }
    for j, verdict in enumerate(reviewed):
        box = found.get(verdict.box_id)
        if box is None or box.image_id != image.id or box.source != "predicted":
            raise Invalid(
                f"labels[{i}].reviewed[{j}].box_id: {verdict.box_id} is not a prediction on image {image.id}"
            )
        if box.status != "unlabeled":
            raise Conflict(f"labels[{i}].reviewed[{j}]: box {box.id} was already answered ({box.status})")
    touched: list[Box] = []
    changes = []
    for verdict in reviewed:
        box = found[verdict.box_id]
        before = box_state(box)
        if verdict.action == "adjust" and verdict.bbox is not None and verdict.label is not None:
            box.predicted = box.predicted or {"bbox": box.bbox, "label": box.label}
            box.x1, box.y1, box.x2, box.y2 = verdict.bbox
            box.label = class_index[verdict.label]
        box.status = "background" if verdict.action == "background" else "labeled"
        box.round_queried = query.round
        box.round_answered = project.serving_round
        touched.append(box)
        after_state = box_state(box)
        changes.append({"box_id": box.id, "action": verdict.action, "before": before, "after": after_state})
    created = _drawn(session, project, query, image, item, class_index, now)
    after = {
        "reviewed": changes,
        "boxes": [{"box_id": b.id, "bbox": b.bbox, "label": b.label} for b in created],
    }
    event = event_for(project, query, None, "review", item, project.serving_round, None, after, now)
    resolved = _complete(session, project, query, image, event, [*touched, *created])
    return LabelResult(
        query_id=query.id,
        status="recorded",
        event_id=event.id,
        box_ids=[b.id for b in touched if b.status == "labeled"] + [b.id for b in created],
        resolved_box_ids=[b.id for b in touched if b.status == "background"] + resolved,
    )
