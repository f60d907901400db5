"""Answers to queries. A batch is all-or-nothing; every answer is an append-only label event.

An answer is taken when its query is still leased, or when the lease expired (or was given back) and
the box is still unanswered and not leased to someone else; otherwise 409. Sending the same answer
for a query again is a no-op that returns the first result (idempotent per ``query_id``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import is_sqlite
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.labels.resolve import box_state, resolve_predictions_on_complete_image, suppress_duplicates
from app.labels.schemas import LabelIn, LabelResult
from app.models import Box, Image, LabelEvent, Project, Query
from app.projects.service import project_settings
from app.schemas import bbox_inside


def _lock(session: Session, stmt):  # type: ignore[no-untyped-def]
    return stmt if is_sqlite(session) else stmt.with_for_update(key_share=True)


def answer(
    session: Session,
    project: Project,
    items: list[LabelIn],
    now: datetime,
    *,
    only_annotator: str | None = None,
) -> list[LabelResult]:
    """Record a batch of answers; ``only_annotator``: the caller may answer only its own leases."""
    ids = sorted({item.query_id for item in items})
    queries = {
        q.id: q
        for q in session.scalars(_lock(session, select(Query).where(Query.id.in_(ids)).order_by(Query.id)))
    }
    for i, item in enumerate(items):
        query = queries.get(item.query_id)
        if query is None or query.project_id != project.id:
            raise NotFound(f"labels[{i}]: query {item.query_id} does not exist in project {project.id}")
        if only_annotator is not None and query.annotator != only_annotator:
            raise Forbidden(f"labels[{i}]: query {item.query_id} was leased to another annotator")
    box_ids = sorted({q.box_id for q in queries.values() if q.box_id is not None})
    boxes = {
        b.id: b
        for b in session.scalars(_lock(session, select(Box).where(Box.id.in_(box_ids)).order_by(Box.id)))
    }
    image_ids = sorted({q.image_id for q in queries.values()})
    images = {
        im.id: im
        for im in session.scalars(
            _lock(session, select(Image).where(Image.id.in_(image_ids)).order_by(Image.id))
        )
    }
    class_index = {name: i for i, name in enumerate(project.classes)}
    threshold = project_settings(project).suppress_duplicates_iou
    results: list[LabelResult] = []
    for i, item in enumerate(items):
        query = queries[item.query_id]
        _check(item, query, images[query.image_id], class_index, project, i)
        fingerprint = item.fingerprint()
        if query.state == "answered":
            if query.answer and query.answer.get("fingerprint") == fingerprint:
                results.append(
                    LabelResult.model_validate({**query.answer["result"], "status": "already_recorded"})
                )
                continue
            first = query.answer["fingerprint"]["action"] if query.answer else "?"
            raise Conflict(
                f"labels[{i}]: query {query.id} was already answered ({first}) with a different answer; "
                "answers are never overwritten"
            )
        if query.unit == "review":
            result = _answer_review(
                session, project, query, images[query.image_id], item, class_index, now, i
            )
        elif query.unit == "box":
            result = _answer_box(
                session, project, query, boxes[query.box_id], item, class_index, threshold, now, i
            )
        else:
            result = _answer_image(session, project, query, images[query.image_id], item, class_index, now, i)
        query.state = "answered"
        query.answered_at = now
        query.answer_event_id = result.event_id
        query.answer = {"fingerprint": fingerprint, "result": result.model_dump()}
        results.append(result)
    session.flush()
    return results


def _check(
    item: LabelIn, query: Query, image: Image, class_index: dict[str, int], project: Project, i: int
) -> None:
    if query.unit == "box" and item.action == "label_all":
        raise Invalid(
            f"labels[{i}].action: query {query.id} asks about a box; label_all answers image queries"
        )
    if query.unit == "image" and item.action != "label_all":
        raise Invalid(
            f"labels[{i}].action: query {query.id} asks for a whole image; answer it with label_all"
        )
    if (query.unit == "review") != (item.action == "review"):
        raise Invalid(
            f"labels[{i}].action: query {query.id} is a {query.unit} query; review answers review queries"
        )
    drawn = [(item.bbox, item.label, f"labels[{i}]")] if item.bbox is not None else []
    drawn += [(b.bbox, b.label, f"labels[{i}].boxes[{j}]") for j, b in enumerate(item.boxes or [])]
    drawn += [
        (r.bbox, r.label, f"labels[{i}].reviewed[{j}]")
        for j, r in enumerate(item.reviewed or [])
        if r.bbox is not None
    ]
    for bbox, label, where in drawn:
        if not bbox_inside(bbox, image.width, image.height):
            raise Invalid(f"{where}.bbox: {bbox} is outside the {image.width}x{image.height} image")
        if label not in class_index:
            raise Invalid(
                f"{where}.label: {label!r} is not a class of this project; valid: {project.classes}"
            )


def _event(
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


def _check_lease(target: Box | Image, query: Query, now: datetime, i: int, what: str) -> None:
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


def _answer_box(
    session: Session,
    project: Project,
    query: Query,
    box: Box,
    item: LabelIn,
    class_index: dict[str, int],
    threshold: float | None,
    now: datetime,
    i: int,
) -> LabelResult:
    if box.status != "unlabeled":
        raise Conflict(f"labels[{i}]: box {box.id} was already answered ({box.status}) through another query")
    _check_lease(box, query, now, i, f"box {box.id}")
    before = box_state(box)
    if item.action == "adjust":
        if item.bbox is None or item.label is None:
            raise Invalid(f"labels[{i}]: adjust needs bbox and label")
        box.predicted = box.predicted or {"bbox": box.bbox, "label": box.label}
        box.x1, box.y1, box.x2, box.y2 = item.bbox
        box.label = class_index[item.label]
    box.status = {"accept": "labeled", "adjust": "labeled"}.get(item.action, item.action)
    box.round_queried = query.round
    box.round_answered = project.serving_round
    box.lease_query_id = None
    box.lease_expires_at = None
    event = _event(project, query, box, item.action, item, project.serving_round, before, box_state(box), now)
    session.add(event)
    derived: list[LabelEvent] = []
    if box.status == "labeled" and threshold is not None:
        derived = suppress_duplicates(
            session,
            box,
            threshold,
            annotator=query.annotator,
            round_number=project.serving_round,
            query_id=query.id,
        )
    session.flush()
    box.answer_event_id = event.id
    for other in derived:
        _stamp(session, other)
    return LabelResult(
        query_id=query.id,
        status="recorded",
        event_id=event.id,
        box_ids=[box.id],
        resolved_box_ids=[e.box_id for e in derived if e.box_id is not None],
    )


def _stamp(session: Session, event: LabelEvent) -> None:
    box = session.get(Box, event.box_id)
    if box is not None:
        box.answer_event_id = event.id


def _answer_image(
    session: Session,
    project: Project,
    query: Query,
    image: Image,
    item: LabelIn,
    class_index: dict[str, int],
    now: datetime,
    i: int,
) -> LabelResult:
    if image.fully_labeled:
        raise Conflict(f"labels[{i}]: image {image.id} is already fully labeled")
    _check_lease(image, query, now, i, f"image {image.id}")
    created = _drawn(session, project, query, image, item, class_index, now)
    after = {"boxes": [{"box_id": b.id, "bbox": b.bbox, "label": b.label} for b in created]}
    event = _event(project, query, None, "label_all", item, project.serving_round, None, after, now)
    resolved = _complete(session, project, query, image, event, created)
    return LabelResult(
        query_id=query.id, status="recorded", event_id=event.id, box_ids=[b.id for b in created],
        resolved_box_ids=resolved,
    )  # fmt: skip


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
        _stamp(session, other)
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


def _answer_review(
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
    if image.fully_labeled:
        raise Conflict(f"labels[{i}]: image {image.id} is already fully labeled")
    _check_lease(image, query, now, i, f"image {image.id}")
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
    event = _event(project, query, None, "review", item, project.serving_round, None, after, now)
    resolved = _complete(session, project, query, image, event, [*touched, *created])
    return LabelResult(
        query_id=query.id,
        status="recorded",
        event_id=event.id,
        box_ids=[b.id for b in touched if b.status == "labeled"] + [b.id for b in created],
        resolved_box_ids=[b.id for b in touched if b.status == "background"] + resolved,
    )


def list_events(session: Session, project_id: int, *, limit: int, cursor: int | None) -> list[LabelEvent]:
    stmt = select(LabelEvent).where(LabelEvent.project_id == project_id).order_by(LabelEvent.id).limit(limit)
    if cursor is not None:
        stmt = stmt.where(LabelEvent.id > cursor)
    return list(session.scalars(stmt))


def get_event(session: Session, project_id: int, event_id: int) -> LabelEvent:
    event = session.get(LabelEvent, event_id)
    if event is None or event.project_id != project_id:
        raise NotFound(f"label event {event_id} does not exist in project {project_id}")
    return event
