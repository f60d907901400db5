"""What ``/predict`` answers for Label Studio tasks: the current model's boxes on each task's image as
``rectanglelabels`` results in percent, the boxes boxal asks about marked, and a task ``score`` that makes
Label Studio's uncertainty sampling (ascending score) serve first the image with boxal's most informative
box."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.label_studio.config import LabelConfig
from app.models import Box, BoxScore, Image, Project, Round
from app.projects.service import project_settings
from app.rounds import ranking
from app.rounds.service import round_unit


@dataclass(frozen=True)
class Shown:
    box: Box
    informativeness: float | None  # in the served ranking; None: drawn for review only
    asked: bool  # among the boxes the open round asks about (its round_size best)


def model_version(session: Session, project: Project) -> str:
    """The serving round's model version, the name Label Studio files predictions under."""
    if project.serving_round > 0:
        version = session.scalar(
            select(Round.model_version).where(
                Round.project_id == project.id, Round.number == project.serving_round
            )
        )
        if version:
            return str(version)
    return f"boxal-{project.id}-untrained"


def shown_boxes(session: Session, project: Project, image_ids: list[int]) -> dict[int, list[Shown]]:
    """Per image, the unanswered predictions drawn for the annotator: the box queries the open round asks
    (its ``round_size`` best in the served ranking, marked) and the model's confident boxes
    (``review_min_score``), best score first."""
    shown: dict[int, list[Shown]] = {image_id: [] for image_id in image_ids}
    if not image_ids:
        return shown
    config = project_settings(project)
    round_id = ranking.serving_round_id(session, project)
    cut = _asked_from(session, project, round_id, config.round_size)
    ranked = BoxScore.round_id == round_id if round_id is not None else BoxScore.round_id.is_(None)
    drawn = Box.score >= config.review_min_score
    if cut is not None:
        drawn = or_(drawn, BoxScore.informativeness >= cut)
    stmt = (
        select(Box, BoxScore.informativeness)
        .outerjoin(BoxScore, (BoxScore.box_id == Box.id) & ranked)
        .where(Box.image_id.in_(image_ids), Box.status == "unlabeled", Box.source == "predicted", drawn)
        .order_by(Box.image_id, Box.score.desc(), Box.id)
    )
    for box, informativeness in session.execute(stmt):
        asked = informativeness is not None and cut is not None and informativeness >= cut
        shown[box.image_id].append(Shown(box, informativeness, asked))
    return shown


def _asked_from(session: Session, project: Project, round_id: int | None, budget: int) -> float | None:
    """The informativeness of the round's ``budget``-th best unanswered box: those at or above it are the
    box queries the round still asks (all of them where fewer are left)."""
    if round_id is None:
        return None
    stmt = (
        select(BoxScore.informativeness)
        .join(Box, Box.id == BoxScore.box_id)
        .where(BoxScore.round_id == round_id, Box.status == "unlabeled")
        .order_by(BoxScore.informativeness.desc())
    )
    cut = session.scalar(stmt.offset(budget - 1).limit(1))
    return float(cut) if cut is not None else -1e308  # fewer left than the budget: every one is asked


def task_scores(session: Session, project: Project) -> dict[int, float]:
    """Every unfinished pool image's place in boxal's order, as a score in [0, 1) that Label Studio sorts
    ascending: images by their best ranked box, then those without one by the image queue's order."""
    round_id = ranking.serving_round_id(session, project)
    best: dict[int, float] = {}
    if round_id is not None:
        stmt = (
            select(Box.image_id, func.max(BoxScore.informativeness))
            .join(BoxScore, BoxScore.box_id == Box.id)
            .where(BoxScore.round_id == round_id, Box.status == "unlabeled")
            .group_by(Box.image_id)
        )
        best = {image_id: float(value) for image_id, value in session.execute(stmt)}
    rows = session.execute(
        select(Image.id, Image.informativeness).where(
            Image.project_id == project.id, Image.split == "pool", ~Image.fully_labeled
        )
    ).all()
    order = sorted(
        rows,
        key=lambda row: (
            row.id not in best,
            -best.get(row.id, 0.0),
            -(row.informativeness if row.informativeness is not None else float("-inf")),
            row.id,
        ),
    )
    return {row.id: place / len(order) for place, row in enumerate(order)}


def unit_note(session: Session, project: Project) -> str | None:
    """Under unit auto, the unit the serving round serves and why, as a line Label Studio shows with each
    region ("boxal serves review this round: recall 0.41 < 0.70; ..."); None for a fixed unit."""
    if project_settings(project).unit != "auto":
        return None
    serving = session.scalar(
        select(Round).where(Round.project_id == project.id, Round.number == project.serving_round)
    )
    choice = (serving.unit_choice if serving is not None else None) or {}
    reason = choice.get("reason", "review: no model measured yet")
    return f"boxal serves {round_unit(project, serving)} this round ({reason})"


def region(
    config: LabelConfig, project: Project, image: Image, shown: Shown, note: str | None = None
) -> dict[str, Any]:
    """One box as a Label Studio rectangle (percent of the image), its id naming the boxal box; ``note``
    (unit auto's choice) goes into its meta text, which Label Studio shows with the region."""
    box = shown.box
    result: dict[str, Any] = {
        "id": f"boxal-{box.id}",
        "from_name": config.from_name,
        "to_name": config.to_name,
        "type": "rectanglelabels",
        "original_width": image.width,
        "original_height": image.height,
        "image_rotation": 0,
        "value": {
            "x": 100.0 * box.x1 / image.width,
            "y": 100.0 * box.y1 / image.height,
            "width": 100.0 * (box.x2 - box.x1) / image.width,
            "height": 100.0 * (box.y2 - box.y1) / image.height,
            "rotation": 0,
            "rectanglelabels": [project.classes[box.label]],
        },
        "score": box.score,
    }
    text = []
    if shown.asked:
        text.append(f"boxal asks: is this box right? (informativeness {shown.informativeness:.3g})")
    if note:
        text.append(note)
    if text:
        result["meta"] = {"text": text}
    return result


def predict(
    session: Session, project: Project, config: LabelConfig, images: list[Image]
) -> list[dict[str, Any]]:
    """One prediction per task, each task's image given in order: its boxes, score and model version."""
    version = model_version(session, project)
    shown = shown_boxes(session, project, sorted({image.id for image in images}))
    scores = task_scores(session, project)
    note = unit_note(session, project)
    return [
        {
            "result": [region(config, project, image, s, note) for s in shown[image.id]],
            "score": scores.get(image.id, 1.0),
            "model_version": version,
        }
        for image in images
    ]
