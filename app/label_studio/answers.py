"""A Label Studio annotation as boxal answers: the image's review (each prediction drawn for it accepted,
adjusted or deleted, the objects it missed drawn) or, before any model, its image answer (every box drawn),
through the same answer service as ``POST /labels``, with ``lead_time`` as the answer's duration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, Invalid
from app.label_studio.predictions import shown_boxes
from app.label_studio.schemas import AnnotationIn
from app.labels import corrections
from app.labels import service as labels
from app.labels.schemas import DrawnBox, LabelIn, LabelResult, ReviewedBox
from app.models import Box, Image, LabelStudioLink, Project, Query
from app.queries.service import claim_image
from formats.geometry import iou

MATCH_IOU = 0.5  # a drawn box this close to a prediction is that prediction, adjusted
SAME_PX = 1.0  # a prediction whose corners moved less than this (percent rounding) was accepted
MAX_DURATION_MS = 24 * 3600 * 1000


def annotator(annotation: AnnotationIn) -> str:
    who = annotation.completed_by
    if isinstance(who, dict):
        who = who.get("email") or who.get("id")
    return f"label-studio:{who}" if who not in (None, "") else "label-studio"


def drawn_boxes(
    annotation: AnnotationIn, link: LabelStudioLink, project: Project, image: Image
) -> list[tuple[str, list[float], str]]:
    """The annotation's rectangles of the linked control as (region id, [x1, y1, x2, y2] in pixels, class),
    clipped to the image; 422 naming the region for a rotated box, an unknown class or no area."""
    found = []
    for j, region in enumerate(annotation.result):
        if region.get("type") != "rectanglelabels" or region.get("from_name") != link.from_name:
            continue  # another control's result (a text area, a choice): not boxal's
        where = f"annotation.result[{j}]"
        value: dict[str, Any] = region.get("value") or {}
        try:
            x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(f"{where}.value: needs numbers x, y, width and height (percent)") from exc
        if float(value.get("rotation") or 0.0) != 0.0:
            raise Invalid(
                f"{where}.value.rotation: boxal's boxes are axis-aligned; rotated boxes are not taken"
            )
        names = value.get("rectanglelabels") or []
        if len(names) != 1 or names[0] not in project.classes:
            raise Invalid(
                f"{where}.value.rectanglelabels: {names} is not one of the classes {project.classes}"
            )
        bbox = [
            min(max(x, 0.0), 100.0) * image.width / 100.0,
            min(max(y, 0.0), 100.0) * image.height / 100.0,
            min(max(x + w, 0.0), 100.0) * image.width / 100.0,
            min(max(y + h, 0.0), 100.0) * image.height / 100.0,
        ]
        if bbox[2] <= bbox[0] or bbox[3] <= bbox[1]:
            raise Invalid(f"{where}.value: the box has no area inside the {image.width}x{image.height} image")
        found.append((str(region.get("id") or ""), bbox, names[0]))
    return found


def as_label(
    session: Session, project: Project, image: Image, drawn: list[tuple[str, list[float], str]], query_id: int
) -> LabelIn:
    """The answer the drawn boxes make: a prediction kept under its region id, or redrawn over it (IoU >=
    0.5), is accepted (unmoved, same class) or adjusted; one drawn for the annotator and gone is deleted
    (background); every other box drawn is a missing object."""
    shown = {s.box.id: s.box for s in shown_boxes(session, project, [image.id])[image.id]}
    ids = [int(rid[6:]) for rid, _, _ in drawn if rid.startswith("boxal-") and rid[6:].isdigit()]
    predictions = {
        box.id: box
        for box in session.scalars(
            select(Box).where(
                Box.id.in_(ids),
                Box.image_id == image.id,
                Box.source == "predicted",
                Box.status == "unlabeled",
            )
        )
    }
    verdicts: dict[int, ReviewedBox] = {}
    missing: list[tuple[list[float], str]] = []
    for rid, bbox, name in drawn:
        box = predictions.get(int(rid[6:])) if rid.startswith("boxal-") and rid[6:].isdigit() else None
        if box is None or box.id in verdicts:
            missing.append((bbox, name))
        else:
            verdicts[box.id] = _verdict(box, bbox, name, project)
    left = {i: box for i, box in shown.items() if i not in verdicts}
    for bbox, name in list(missing):  # redrawn rather than moved: the closest prediction left, if close
        best = max(left.values(), key=lambda box: iou(box.bbox, bbox), default=None)
        if best is not None and iou(best.bbox, bbox) >= MATCH_IOU:
            verdicts[best.id] = _verdict(best, bbox, name, project)
            del left[best.id]
            missing.remove((bbox, name))
    verdicts.update({i: ReviewedBox(box_id=i, action="background") for i in left})
    boxes = [DrawnBox(bbox=bbox, label=name) for bbox, name in missing]
    if not verdicts:
        return LabelIn(query_id=query_id, action="label_all", boxes=boxes)
    return LabelIn(query_id=query_id, action="review", reviewed=list(verdicts.values()), boxes=boxes)


def _verdict(box: Box, bbox: list[float], name: str, project: Project) -> ReviewedBox:
    moved = max(abs(a - b) for a, b in zip(box.bbox, bbox, strict=True))
    same = project.classes[box.label] == name and moved < SAME_PX
    if same:
        return ReviewedBox(box_id=box.id, action="accept")
    return ReviewedBox(box_id=box.id, action="adjust", bbox=bbox, label=name)


def record(
    session: Session,
    project: Project,
    link: LabelStudioLink,
    image: Image,
    annotation: AnnotationIn,
    now: datetime,
) -> LabelResult:
    """Record one annotation of ``image``; the same annotation sent again answers its first result, and the
    annotation changed in Label Studio (ANNOTATION_UPDATED) corrects boxal's answer (the log keeps both)."""
    drawn = drawn_boxes(annotation, link, project, image)
    mark = {"annotation": annotation.id, "drawn": [[*bbox, name] for _, bbox, name in drawn]}
    duration = (
        None if annotation.lead_time is None else min(round(annotation.lead_time * 1000), MAX_DURATION_MS)
    )
    if image.fully_labeled:
        query = _recorded(session, image, mark)
        if (query.answer or {}).get("label_studio") == mark:
            return LabelResult.model_validate(
                {**(query.answer or {})["result"], "status": "already_recorded"}
            )
        corrections.undo(session, query, image)  # the image as the annotator first saw it
        item = as_label(session, project, image, drawn, query_id=query.id)
        item = item.model_copy(update={"duration_ms": duration, "correct": True})
    else:
        probe = as_label(session, project, image, drawn, query_id=1)
        unit = "image" if probe.action == "label_all" else "review"
        query = claim_image(session, project, image, annotator(annotation), unit, now)
        item = probe.model_copy(update={"query_id": query.id, "duration_ms": duration})
    result = labels.answer(session, project, [item], now)[0]
    query.answer = {**(query.answer or {}), "label_studio": mark}  # what a later call compares
    return result


def _recorded(session: Session, image: Image, mark: dict[str, Any]) -> Query:
    """The query that recorded this annotation on an image boxal has complete; 409 where the image was
    completed otherwise (another annotation, or boxal's own API)."""
    answered = session.scalars(
        select(Query).where(Query.image_id == image.id, Query.state == "answered").order_by(Query.id)
    )
    for query in answered:
        first = (query.answer or {}).get("label_studio")
        if first is not None and first["annotation"] == mark["annotation"]:
            return query
    raise Conflict(
        f"image {image.id} is already complete in boxal by another answer; change that one (POST /labels "
        'with "correct": true) or update the annotation that made it'
    )
