"""What a round's stages read and write: the model, predictions, scores, the ranking, the metrics.

The worker's stages (worker/stages/) call these, each inside a transaction of its own. Writes are
idempotent: a stage that runs twice (a retried task, a recovered job) writes everything once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import is_sqlite
from app.errors import Conflict
from app.models import Box, BoxScore, Image, ImageScore, Project, Round, utcnow
from app.projects.service import project_settings
from app.rounds.service import get_round, round_unit


def training_finished(session: Session, round_id: int, model_version: str) -> Round:
    """The round's model exists: training -> scoring (a repeated report is a no-op)."""
    round_ = get_round(session, round_id, for_update=True)
    if round_.state == "training":
        round_.state = "scoring"
        round_.model_version = model_version
    elif round_.model_version != model_version:
        raise Conflict(f"round {round_.number} is {round_.state} with model {round_.model_version}")
    session.flush()
    return round_


def previous_model(session: Session, project_id: int, number: int) -> str | None:
    """The model version of the latest round before ``number`` that has one."""
    return session.scalar(
        select(Round.model_version)
        .where(Round.project_id == project_id, Round.number < number, Round.model_version.is_not(None))
        .order_by(Round.number.desc())
        .limit(1)
    )


# --- the pool, shard by shard ----------------------------------------------------------------------


@dataclass
class PoolImage:
    """A pool image with its boxes, as a shard of the scoring stage sees it."""

    image: Image
    boxes: list[Box] = field(default_factory=list)

    @property
    def unlabeled(self) -> list[Box]:
        """Predicted boxes nobody has answered yet (U_B on this image)."""
        return [b for b in self.boxes if b.status == "unlabeled" and b.source == "predicted"]

    @property
    def labeled(self) -> list[Box]:
        return [b for b in self.boxes if b.status == "labeled"]

    @property
    def answered(self) -> list[Box]:
        return [b for b in self.boxes if b.status != "unlabeled"]


def pool_size(session: Session, project_id: int) -> int:
    return int(
        session.scalar(select(func.count()).where(Image.project_id == project_id, Image.split == "pool")) or 0
    )


def pool_shard(session: Session, project_id: int, index: int, total: int) -> list[PoolImage]:
    """The pool images whose id is ``index`` modulo ``total``, each with all its boxes, by id."""
    images = session.scalars(
        select(Image)
        .where(Image.project_id == project_id, Image.split == "pool", Image.id % total == index)
        .order_by(Image.id)
    )
    shard = {image.id: PoolImage(image) for image in images}
    ids = list(shard)
    for start in range(0, len(ids), 500):
        stmt = select(Box).where(Box.image_id.in_(ids[start : start + 500])).order_by(Box.id)
        for box in session.scalars(stmt):
            shard[box.image_id].boxes.append(box)
    return list(shard.values())


def record_predictions(
    session: Session, round_id: int, image_id: int, predictions: list[dict[str, Any]], model_version: str
) -> list[int]:
    """New unlabeled boxes from this round's model on one pool image; running it twice replaces, not adds.

    Each prediction: ``bbox`` (xyxy pixels), ``label`` (class index), ``score``, ``probs`` (class vector).
    They stay hidden from leasing until the round's ranking is applied. Returns the new box ids in the
    order of ``predictions``, and marks the image as predicted in this round.
    """
    round_ = get_round(session, round_id)
    session.execute(
        delete(Box).where(
            Box.image_id == image_id,
            Box.source == "predicted",
            Box.status == "unlabeled",
            Box.round_predicted == round_.number,
        )
    )
    rows = [
        Box(
            project_id=round_.project_id,
            image_id=image_id,
            source="predicted",
            status="unlabeled",
            x1=float(p["bbox"][0]),
            y1=float(p["bbox"][1]),
            x2=float(p["bbox"][2]),
            y2=float(p["bbox"][3]),
            label=int(p["label"]),
            score=float(p["score"]),
            probs=[float(v) for v in p["probs"]] if p.get("probs") is not None else None,
            model_version=model_version,
            round_predicted=round_.number,
        )
        for p in predictions
    ]
    session.add_all(rows)
    session.execute(update(Image).where(Image.id == image_id).values(predicted_round=round_.number))
    session.flush()
    return [row.id for row in rows]


def record_scores(
    session: Session,
    round_id: int,
    box_scores: dict[int, float],
    image_scores: dict[int, float] | None = None,
) -> None:
    """Stage informativeness under this round's model: one bulk upsert per table (a shard that runs twice
    writes once), on the primary key, so its cost does not grow with what is staged already."""
    upsert = sqlite_insert if is_sqlite(session) else pg_insert
    for table, key, scores in (
        (BoxScore, "box_id", box_scores),
        (ImageScore, "image_id", image_scores or {}),
    ):
        if not scores:
            continue
        statement = upsert(table)
        statement = statement.on_conflict_do_update(
            index_elements=["round_id", key], set_={"informativeness": statement.excluded.informativeness}
        )
        session.execute(
            statement,
            [{"round_id": round_id, key: i, "informativeness": float(v)} for i, v in scores.items()],
        )
    session.flush()


def apply_ranking(session: Session, round_id: int) -> Round:
    """Make this round's scores the served ranking, in one transaction, and open the round.

    The box ranking switches by one row whatever the pool's size; the superseded rounds' scores are
    dropped afterwards, in batches (``ranking.drop_superseded``)."""
    round_ = get_round(session, round_id, for_update=True)
    if round_.state in ("open", "closed"):
        return round_
    if round_.state != "scoring":
        raise Conflict(f"round {round_.number} is {round_.state}, not scoring")
    project = session.get(Project, round_.project_id)
    assert project is not None
    # Boxes: this round's staged scores become the served ranking as they are (app/rounds/ranking.py),
    # by the one-row switch of serving_round below. Images (one row per image, not per box) are copied.
    session.execute(
        update(Image)
        .where(Image.id == ImageScore.image_id, ImageScore.round_id == round_id)
        .values(informativeness=ImageScore.informativeness, model_version=round_.model_version)
    )
    if project_settings(project).pool_policy == "refresh":
        _drop_superseded_predictions(session, project.id, round_.number)
    session.execute(delete(ImageScore).where(ImageScore.round_id == round_id))
    unlabeled = session.scalar(
        select(func.count()).where(Box.project_id == project.id, Box.status == "unlabeled")
    )
    stats: dict[str, Any] = {"unlabeled_boxes": int(unlabeled or 0)}
    notice = fallback_notice(session, project, round_.number, stats["unlabeled_boxes"])
    if notice:
        stats["notice"] = notice
    round_.pool_stats = stats  # assigned whole: a JSON column does not see changes made in place
    round_.state = "open"
    round_.opened_at = utcnow()
    project.serving_round = round_.number
    session.flush()
    return round_


def fallback_notice(session: Session, project: Project, number: int, unlabeled: int) -> str | None:
    """Why a box round will serve image queries, in words a user can act on; None if it will not."""
    config = project_settings(project)
    round_ = session.scalar(select(Round).where(Round.project_id == project.id, Round.number == number))
    if round_unit(project, round_) != "box" or unlabeled >= config.round_size:
        return None
    open_images = session.scalar(
        select(func.count()).where(
            Image.project_id == project.id, Image.split == "pool", ~Image.fully_labeled
        )
    )
    if not open_images:
        return None  # every pool image is fully labeled: nothing is left to serve, as boxes or images
    if unlabeled == 0:
        why = (
            f"round {number}'s model predicted no box scoring at least t_d = {config.t_d} on the "
            f"{open_images} pool images that are not fully labeled"
        )
    else:
        why = (
            f"round {number} has {unlabeled} box queries, fewer than the {config.round_size} a round asks for"
        )
    return (
        f"{why}, so once they are taken the round is served as image queries ({config.fallback} order), "
        "answered by drawing every object. For more box queries: lower t_d, train longer (more epochs "
        "or iterations), or use a pretrained model preset."
    )


def _drop_superseded_predictions(session: Session, project_id: int, number: int) -> None:
    """Pool policy refresh: older unanswered, unleased predictions on re-predicted images go."""
    repredicted = select(Image.id).where(Image.project_id == project_id, Image.predicted_round == number)
    session.execute(
        delete(Box).where(
            Box.project_id == project_id,
            Box.source == "predicted",
            Box.status == "unlabeled",
            Box.round_predicted < number,
            Box.lease_query_id.is_(None),
            Box.image_id.in_(repredicted),
        )
    )


# --- evaluation ------------------------------------------------------------------------------------


def evaluation_set(session: Session, project_id: int) -> list[tuple[Image, list[Box]]]:
    """Test images that have ground truth, each with its labeled boxes, by image id: every test image
    whose ground truth was imported, those with no object included (their detections are false
    positives), and any other with a labeled box."""
    images = list(
        session.scalars(
            select(Image).where(Image.project_id == project_id, Image.split == "test").order_by(Image.id)
        )
    )
    truth: dict[int, list[Box]] = {image.id: [] for image in images}
    labeled = select(Box).where(
        Box.project_id == project_id, Box.status == "labeled", Box.image_id.in_(list(truth))
    )
    for box in session.scalars(labeled):
        truth[box.image_id].append(box)
    return [(image, truth[image.id]) for image in images if image.fully_labeled or truth[image.id]]


def test_images_without_truth(session: Session, project_id: int) -> int:
    """Test images registered with no ground truth imported: they cannot be evaluated."""
    with_boxes = select(Box.image_id).where(Box.project_id == project_id, Box.status == "labeled")
    stmt = select(func.count()).where(
        Image.project_id == project_id,
        Image.split == "test",
        ~Image.fully_labeled,
        Image.id.not_in(with_boxes),
    )
    return int(session.scalar(stmt) or 0)


def record_evaluation(session: Session, round_id: int, metrics: dict[str, Any]) -> None:
    round_ = get_round(session, round_id, for_update=True)
    round_.metrics = {**(round_.metrics or {}), **metrics}
    session.flush()
