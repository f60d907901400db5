"""Boxes resolved as a consequence of an answer, each logged as a ``derived`` label event.

- A labeled box may suppress still-unlabeled boxes that overlap it (``suppress_duplicates_iou``).
- A fully labeled image (image query, or imported ground truth) answers every predicted box left on
  it: ``duplicate`` where it overlaps a labeled box at IoU >= 0.5 (the oracle's rule), else ``background``.
Rows locked by a concurrent transaction are skipped (that box is being answered right now anyway).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import is_sqlite
from app.models import Box, Image, LabelEvent
from formats.geometry import iou

MATCH_IOU = 0.5


def box_state(box: Box) -> dict:
    return {"status": box.status, "bbox": box.bbox, "label": box.label}


def _unlabeled_on_image(session: Session, image_id: int, exclude: set[int]) -> list[Box]:
    stmt = select(Box).where(Box.image_id == image_id, Box.status == "unlabeled").order_by(Box.id)
    if not is_sqlite(session):
        stmt = stmt.with_for_update(skip_locked=True, key_share=True)
    return [box for box in session.scalars(stmt) if box.id not in exclude]


def _resolve(
    session: Session,
    box: Box,
    status: str,
    *,
    annotator: str,
    round_number: int,
    query_id: int | None,
    why: str,
) -> LabelEvent:
    before = box_state(box)
    box.status = status
    box.round_answered = round_number
    box.lease_query_id = None
    box.lease_expires_at = None
    event = LabelEvent(
        project_id=box.project_id,
        kind="derived",
        query_id=query_id,
        box_id=box.id,
        image_id=box.image_id,
        annotator=annotator,
        action=status,
        before=before,
        after={**box_state(box), "reason": why},
        round=round_number,
    )
    session.add(event)
    return event


def suppress_duplicates(
    session: Session, labeled: Box, threshold: float, *, annotator: str, round_number: int, query_id: int
) -> list[LabelEvent]:
    events = []
    for other in _unlabeled_on_image(session, labeled.image_id, {labeled.id}):
        overlap = iou(other.bbox, labeled.bbox)
        if overlap >= threshold:
            why = f"overlaps labeled box {labeled.id} at IoU {overlap:.2f} >= {threshold}"
            events.append(
                _resolve(
                    session,
                    other,
                    "duplicate",
                    annotator=annotator,
                    round_number=round_number,
                    query_id=query_id,
                    why=why,
                )
            )
    return events


def resolve_predictions_on_complete_image(
    session: Session, image: Image, *, annotator: str, round_number: int, query_id: int | None
) -> list[LabelEvent]:
    labeled = list(session.scalars(select(Box).where(Box.image_id == image.id, Box.status == "labeled")))
    events = []
    for box in _unlabeled_on_image(session, image.id, set()):
        best = max(labeled, key=lambda other: iou(box.bbox, other.bbox), default=None)
        overlap = iou(box.bbox, best.bbox) if best is not None else 0.0
        if best is not None and overlap >= MATCH_IOU:
            status, why = "duplicate", f"image fully labeled; matches box {best.id} at IoU {overlap:.2f}"
        else:
            status, why = "background", "image fully labeled; no labeled object here"
        events.append(
            _resolve(
                session,
                box,
                status,
                annotator=annotator,
                round_number=round_number,
                query_id=query_id,
                why=why,
            )
        )
    return events
