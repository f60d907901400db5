"""The served box ranking: the serving round's staged scores, read where they were written.

A round's scoring shards stage every unlabeled box's informativeness in ``box_scores``; when the round
opens, those rows *are* the ranking that leases walk (``ix_box_scores_queue``), so switching from one
ranking to the next is one row (``projects.serving_round``), atomic and instant at any pool size, and
nothing is copied back into ``boxes``. ``boxes.informativeness`` keeps the value a box came with (an
import's, or none): it ranks boxes no round has scored. The previous rounds' rows are dropped in small
batches once a newer ranking serves (``drop_superseded``), never inside the switch.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.models import Box, BoxScore, Project, Round

DROP_BATCH = 5_000  # rows per transaction: short enough that leases on SQLite interleave


def serving_round_id(session: Session, project: Project) -> int | None:
    """The id of the round whose ranking is served, or None before the first round opens."""
    if project.serving_round == 0:
        return None
    return session.scalar(
        select(Round.id).where(Round.project_id == project.id, Round.number == project.serving_round)
    )


def served_informativeness(
    session: Session, project: Project, boxes: Iterable[Box]
) -> dict[int, float | None]:
    """Each box's informativeness in the served ranking (its own value if the serving round has none)."""
    boxes = list(boxes)
    values: dict[int, float | None] = {box.id: box.informativeness for box in boxes}
    round_id = serving_round_id(session, project)
    ids = [box.id for box in boxes if box.status == "unlabeled"]
    if round_id is None or not ids:
        return values
    for start in range(0, len(ids), 1000):
        stmt = select(BoxScore.box_id, BoxScore.informativeness).where(
            BoxScore.round_id == round_id, BoxScore.box_id.in_(ids[start : start + 1000])
        )
        values.update(dict(session.execute(stmt).all()))
    return values


def drop_superseded(session: Session, project_id: int, serving_number: int, limit: int = DROP_BATCH) -> int:
    """Delete up to ``limit`` staged scores of one round older than the serving one; how many went."""
    older = select(Round.id).where(Round.project_id == project_id, Round.number < serving_number)
    round_id = session.scalar(select(BoxScore.round_id).where(BoxScore.round_id.in_(older)).limit(1))
    if round_id is None:
        return 0
    batch = (
        select(BoxScore.box_id)
        .where(BoxScore.round_id == round_id)
        .order_by(BoxScore.box_id)
        .limit(limit)
        .scalar_subquery()
    )
    done = session.execute(delete(BoxScore).where(BoxScore.round_id == round_id, BoxScore.box_id.in_(batch)))
    return int(done.rowcount or 0)  # type: ignore[attr-defined]
