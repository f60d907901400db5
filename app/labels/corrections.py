"""Corrections: an answer changed by the annotator who gave it (or an admin), without losing the log.

A correction undoes everything the query's events did (its answer, the boxes that answer resolved, any
earlier correction), newest first, from the states each event recorded before it: boxes go back to what
they were, the boxes it drew are removed, an image it completed is open again. The new answer is then
recorded as any answer is, and its event becomes a ``correction`` that names the event it ``supersedes``:
both stay in the log. The boxes and the image keep the first answer's event id, so a round's snapshot and
counts treat the corrected answer as given when the first one was (a correction after the round closed
trains in the next round), and a correction is not another query answered.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.labels.schemas import LabelResult
from app.models import Box, Image, LabelEvent, Query

COMPLETING = ("label_all", "review")


def undo(session: Session, query: Query, image: Image) -> None:
    """Put back what ``query``'s events changed, newest first."""
    events = list(
        session.scalars(
            select(LabelEvent).where(LabelEvent.query_id == query.id).order_by(LabelEvent.id.desc())
        )
    )
    drawn: set[int] = set()
    for event in events:
        after = event.after or {}
        if event.box_id is not None and event.before is not None:
            _restore(session, event.box_id, event.before)
        for change in after.get("reviewed", []):
            _restore(session, change["box_id"], change["before"])
        drawn.update(b["box_id"] for b in after.get("boxes", []) if b.get("box_id") is not None)
        if event.action in COMPLETING:
            image.fully_labeled = False
            image.labeled_event_id = None
    if drawn:
        session.execute(delete(Box).where(Box.id.in_(sorted(drawn)), Box.source == "annotator"))
    session.flush()


def _restore(session: Session, box_id: int, state: dict[str, Any]) -> None:
    box = session.get(Box, box_id)
    if box is None:
        return
    box.status = state["status"]
    box.x1, box.y1, box.x2, box.y2 = state["bbox"]
    box.label = state["label"]
    if box.status == "unlabeled":
        box.answer_event_id = None
        box.round_answered = None


def mark(
    session: Session,
    result: LabelResult,
    superseded: int,
    first: int | None,
    image: Image,
    prior: dict[str, Any] | None,
) -> None:
    """The new answer's event is a correction of ``superseded`` (``prior``: its box as it was before the
    correction); what it answered keeps the first answer's event id ``first``."""
    event = session.get(LabelEvent, result.event_id)
    assert event is not None
    event.kind = "correction"
    if prior is not None:
        event.before = prior
    event.after = {**(event.after or {}), "supersedes": superseded}
    if first is None:
        return
    for box in session.scalars(select(Box).where(Box.answer_event_id == result.event_id)):
        box.answer_event_id = first
    if image.labeled_event_id == result.event_id:
        image.labeled_event_id = first
    session.flush()
