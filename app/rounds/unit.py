"""``unit: auto``: which unit a round serves, from what the model showed on images annotators completed.

When a round starts, the pool images most recently completed by image or review answers (at most
``auto_window``; never the test split, never imported ground truth) are read with the predictions that
were on each when it was answered: the model that made them had not trained on those answers, so they
measure it honestly. On them, against the boxes the annotators left:

- ``recall``: the share of objects some prediction at ``t_d`` covers (IoU >= 0.5, any class);
- ``box_precision``: the share of the boxes it would serve as box queries (score >= ``query_min_score``)
  that lie on an object;
- ``review_precision``: the share of the boxes a review would pre-draw (score >= ``review_min_score``)
  that lie on an object.

With the project's annotator costs (``annotator_costs``: verifying a box, drawing one, looking at an
image) each unit's seconds per ground-truth box are estimated as an annotator would spend them on those
very images: an image query draws every object; a review keeps a right box (IoU >= 0.7, right class),
redraws one that is off, deletes a wrong one and draws what it missed; a box query is accepted, redrawn,
or answered background or duplicate. The cheapest unit is served, behind a quality gate for box queries:
they leave the rest of their image unknown, which pays only when the model covers most objects
(``recall >= auto_min_recall``). With fewer than ``auto_min_images`` images measured, review is served:
a review both completes an image and measures the model on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Box, Image, LabelEvent, Project
from app.projects.schemas import ProjectSettings
from formats.geometry import iou

MATCH_IOU = 0.5  # a prediction lies on an object (the oracle's and pycocotools' AP@0.5 rule)
KEEP_IOU = 0.7  # close enough to keep as drawn (box verification, oracle/answers.py)
COMPLETING = ("label_all", "review")


@dataclass
class Completed:
    """One completed image: the predictions that were on it (box, class, score) and its objects."""

    predictions: list[tuple[list[float], int, float]]
    objects: list[tuple[list[float], int]]


def measured_images(session: Session, project: Project, window: int) -> list[Completed]:
    """The ``window`` pool images most recently completed by an image or review answer."""
    rows = session.execute(
        select(Image.id)
        .join(LabelEvent, LabelEvent.id == Image.labeled_event_id)
        .where(
            Image.project_id == project.id,
            Image.split == "pool",
            Image.fully_labeled,
            LabelEvent.action.in_(COMPLETING),
        )
        .order_by(Image.labeled_event_id.desc())
        .limit(window)
    ).all()
    ids = [image_id for (image_id,) in rows]
    found: dict[int, Completed] = {image_id: Completed([], []) for image_id in ids}
    for box in session.scalars(select(Box).where(Box.image_id.in_(ids)).order_by(Box.id)):
        if box.status == "labeled":
            found[box.image_id].objects.append((box.bbox, box.label))
        if box.source == "predicted" and box.score is not None:
            original = box.predicted or {"bbox": box.bbox, "label": box.label}
            found[box.image_id].predictions.append(
                (list(original["bbox"]), int(original["label"]), float(box.score))
            )
    return [found[image_id] for image_id in ids]


def _best(box: list[float], objects: list[tuple[list[float], int]]) -> tuple[int | None, float]:
    overlaps = [iou(box, obj) for obj, _ in objects]
    if not overlaps:
        return None, 0.0
    best = max(range(len(overlaps)), key=overlaps.__getitem__)
    return best, overlaps[best]


@dataclass
class Tally:
    objects: int = 0
    covered: int = 0  # objects some prediction at t_d lies on
    served: int = 0  # box queries
    served_on_objects: int = 0
    drawn: int = 0  # boxes a review pre-draws
    drawn_on_objects: int = 0
    seconds: dict[str, float] | None = None
    obtained_by_box: int = 0

    def __post_init__(self) -> None:
        self.seconds = {"box": 0.0, "image": 0.0, "review": 0.0}


def tally(images: list[Completed], settings: ProjectSettings) -> Tally:
    costs = settings.annotator_costs
    out = Tally()
    assert out.seconds is not None
    query_floor = max(settings.t_d, settings.query_min_score)
    for image in images:
        objects = image.objects
        out.objects += len(objects)
        out.seconds["image"] += costs.image_s + costs.draw_s * len(objects)
        matches = [_best(box, objects) for box, _, _ in image.predictions]
        out.covered += len({match for match, overlap in matches if overlap >= MATCH_IOU})
        kept: set[int] = set()
        review = costs.image_s
        for box, label, score in sorted(image.predictions, key=lambda p: -p[2]):
            if score < settings.review_min_score:
                continue
            out.drawn += 1
            match, overlap = _best(box, objects)
            if match is None or overlap < MATCH_IOU or match in kept:
                review += costs.verify_s  # deleted
                continue
            out.drawn_on_objects += 1
            kept.add(match)
            review += costs.verify_s if overlap >= KEEP_IOU and label == objects[match][1] else costs.draw_s
        out.seconds["review"] += review + costs.draw_s * (len(objects) - len(kept))
        obtained: set[int] = set()
        for box, label, score in sorted(image.predictions, key=lambda p: -p[2]):
            if score < query_floor:
                continue
            out.served += 1
            match, overlap = _best(box, objects)
            if match is None or overlap < MATCH_IOU:
                out.seconds["box"] += costs.verify_s  # background
            elif match in obtained:
                out.seconds["box"] += costs.verify_s  # duplicate
            else:
                out.served_on_objects += 1
                obtained.add(match)
                right = overlap >= KEEP_IOU and label == objects[match][1]
                out.seconds["box"] += costs.verify_s if right else costs.draw_s
        out.obtained_by_box += len(obtained)
    return out


def choose(session: Session, project: Project, settings: ProjectSettings) -> dict[str, Any]:
    """The unit the next round serves and the figures it was chosen on (stored on the round)."""
    images = measured_images(session, project, settings.auto_window)
    return decide(tally(images, settings), len(images), settings)


def decide(counts: Tally, images: int, settings: ProjectSettings) -> dict[str, Any]:
    """The rule on measured counts (separate from the database, so that tests can feed it cases)."""
    assert counts.seconds is not None
    gate = settings.auto_min_recall
    figures: dict[str, Any] = {"images": images, "objects": counts.objects, "min_recall": gate}
    if images < settings.auto_min_images or counts.objects == 0:
        why = (
            f"review: {images} completed image{'s' * (images != 1)} measured, fewer than "
            f"{settings.auto_min_images}"
            if images < settings.auto_min_images
            else "review: the completed images measured hold no object"
        )
        return {"unit": "review", "reason": why + " (a review completes an image and measures the model)",
                **figures}  # fmt: skip
    recall = counts.covered / counts.objects
    per_box = {
        "image": counts.seconds["image"] / counts.objects,
        "review": counts.seconds["review"] / counts.objects,
        "box": counts.seconds["box"] / counts.obtained_by_box if counts.obtained_by_box else None,
    }
    figures.update(
        recall=round(recall, 3),
        box_precision=round(counts.served_on_objects / counts.served, 3) if counts.served else None,
        review_precision=round(counts.drawn_on_objects / counts.drawn, 3) if counts.drawn else None,
        seconds_per_box={unit: None if s is None else round(s, 2) for unit, s in per_box.items()},
    )
    candidates = {unit: s for unit, s in per_box.items() if s is not None}
    gated = recall < gate
    if gated:
        candidates.pop("box", None)
    unit = min(candidates, key=lambda u: (candidates[u], ("review", "image", "box").index(u)))
    ranked = sorted(candidates.items(), key=lambda kv: kv[1])
    others = ", ".join(f"{u} {s:.1f} s" for u, s in ranked if u != unit) or "no other unit"
    if gated:
        why = f"{unit}: recall {recall:.2f} < {gate:.2f}; {candidates[unit]:.1f} s per box against {others}"
    else:
        why = f"{unit}: {candidates[unit]:.1f} s per box against {others} (recall {recall:.2f} >= {gate:.2f})"
    return {"unit": unit, "reason": why, **figures}
