"""Answers to queries. A batch is all-or-nothing; every answer is an append-only label event.

An answer is taken when its query is still leased, or when the lease expired (or was given back) and
the box is still unanswered and not leased to someone else; otherwise 409. Sending the same answer
for a query again is a no-op that returns the first result (idempotent per ``query_id``); a different
one is a 409 unless it says ``correct`` (app/labels/corrections.py: it replaces the first, and the log
keeps both).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import is_sqlite
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.labels import corrections
from app.labels.images import answer_image, answer_review
from app.labels.records import check_lease, event_for, stamp
from app.labels.resolve import box_state, suppress_duplicates
from app.labels.schemas import LabelIn, LabelResult
from app.models import Box, Image, LabelEvent, Project, Query
from app.projects.service import project_settings
from app.schemas import bbox_inside
from formats.geometry import MIN_BOX_PX


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
        superseded, prior = None, None
        if query.state == "answered":
            if query.answer and query.answer.get("fingerprint") == fingerprint:
                results.append(
                    LabelResult.model_validate({**query.answer["result"], "status": "already_recorded"})
                )
                continue
            if not item.correct:
                first = query.answer["fingerprint"]["action"] if query.answer else "?"
                raise Conflict(
                    f"labels[{i}]: query {query.id} was already answered ({first}) with a different answer; "
                    'to change it, send the new answer with "correct": true (the log keeps both)'
                )
            superseded = query.answer_event_id
            prior = box_state(boxes[query.box_id]) if query.box_id is not None else None
            corrections.undo(session, query, images[query.image_id])
        if query.unit == "review":
            result = answer_review(session, project, query, images[query.image_id], item, class_index, now, i)
        elif query.unit == "box":
            result = _answer_box(
                session, project, query, boxes[query.box_id], item, class_index, threshold, now, i
            )
        else:
            result = answer_image(session, project, query, images[query.image_id], item, class_index, now, i)
        if superseded is not None:
            first = _first_answer(session, query)
            corrections.mark(session, result, superseded, first, images[query.image_id], prior)
        query.state = "answered"
        query.answered_at = now
        query.answer_event_id = result.event_id
        query.answer = {"fingerprint": fingerprint, "result": result.model_dump()}
        results.append(result)
    session.flush()
    return results


def _first_answer(session: Session, query: Query) -> int | None:
    return session.scalar(
        select(func.min(LabelEvent.id)).where(LabelEvent.query_id == query.id, LabelEvent.kind == "answer")
    )


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
        _check_pixels(bbox, image, f"{where}.bbox")
        if not bbox_inside(bbox, image.width, image.height):
            raise Invalid(f"{where}.bbox: {bbox} is outside the {image.width}x{image.height} image")
        if label not in class_index:
            raise Invalid(
                f"{where}.label: {label!r} is not a class of this project; valid: {project.classes}"
            )


def _check_pixels(bbox: list[float], image: Image, where: str) -> None:
    """422 for a box given in normalised coordinates (every one in [0, 1] on an image larger than a few
    pixels: the API takes pixels) or smaller than MIN_BOX_PX."""
    x1, y1, x2, y2 = bbox
    if min(image.width, image.height) > 4 and all(0 <= v <= 1 for v in bbox):
        pixels = [round(x1 * image.width, 1), round(y1 * image.height, 1)]
        pixels += [round(x2 * image.width, 1), round(y2 * image.height, 1)]
        raise Invalid(
            f"{where}: {bbox} looks normalised (every coordinate in [0, 1]); boxal takes pixels of the "
            f"{image.width}x{image.height} image, here {pixels}"
        )
    if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
        raise Invalid(
            f"{where}: {bbox} is {x2 - x1:g}x{y2 - y1:g} px; a box is at least {MIN_BOX_PX:g} px a side"
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
    check_lease(box, query, now, i, f"box {box.id}")
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
    after = box_state(box)
    event = event_for(project, query, box, item.action, item, project.serving_round, before, after, now)
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
        stamp(session, other)
    return LabelResult(
        query_id=query.id,
        status="recorded",
        event_id=event.id,
        box_ids=[box.id],
        resolved_box_ids=[e.box_id for e in derived if e.box_id is not None],
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
