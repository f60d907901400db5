"""What a round trains on: one record per training image, from the label snapshot to the loss.

Round N+1's model trains on every label event with id <= the snapshot taken when round N closed;
answers that keep arriving while it trains count toward the round after. Per DESIGN.md (and the paper,
Sec. 3, "all images with bounding boxes in L_B are added to L_I"):
- L_I: pool images fully labeled or holding at least one answered box, background answers included
  (``training_images: answered``, the default), or only those holding a labeled box (``labeled``);
- on each: labeled boxes are targets of weight 1; predicted boxes still unlabeled (as of the snapshot)
  are noisy targets of weight ``lambda_d``, except on fully labeled images; background and duplicate
  answers are not targets but negatives: their regions train as background at full weight and are never
  matched to a noisy target (worker/engine/regions.py).

A ``TrainingImage`` goes unchanged from here to the engine's dataset, which turns it into tensors, and
the loss reads each box's ``weight`` from them. torch-free: the API and the worker share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Box, Image
from app.rounds.snapshot import labeled_images_query

NoisyMode = Literal["dampen", "drop", "full"]
UnknownBackground = Literal["full", "soft", "ignore"]
TrainingImages = Literal["answered", "labeled"]


@dataclass(frozen=True)
class TargetBox:
    """A box the detector trains on. ``bbox``: [x1, y1, x2, y2] pixels; ``label``: class index 0..C-1.

    ``noisy``: a prediction nobody has answered yet (the paper's noisy label); ``weight``: the factor on
    the loss of every anchor or proposal matched to it (1 for answered boxes, ``lambda_d`` for noisy).
    """

    bbox: list[float]
    label: int
    noisy: bool = False
    weight: float = 1.0
    box_id: int | None = None


@dataclass
class TrainingImage:
    """One image and what it trains with (also used for test images' ground truth): its target boxes,
    its ``negatives`` (regions answered background or duplicate) and its ``ignore`` regions (uncertain
    predictions, refreshed targets only), each region [x1, y1, x2, y2] pixels. ``complete``: every
    object of the image is labeled (imported ground truth, or an answered image query)."""

    path: str
    boxes: list[TargetBox] = field(default_factory=list)
    image_id: int | str | None = None
    width: int | None = None
    height: int | None = None
    negatives: list[list[float]] = field(default_factory=list)
    ignore: list[list[float]] = field(default_factory=list)
    complete: bool = False
    # partly labeled images: how what nobody looked at trains (the unknown_background setting); a complete
    # image's background is known, so it always trains as "full"
    unknown_background: UnknownBackground = "full"

    @property
    def labeled(self) -> list[TargetBox]:
        return [b for b in self.boxes if not b.noisy]

    @property
    def noisy(self) -> list[TargetBox]:
        return [b for b in self.boxes if b.noisy]


def with_noisy_mode(image: TrainingImage, mode: NoisyMode, lambda_d: float) -> TrainingImage:
    """dampen: noisy boxes weigh ``lambda_d``; drop: they leave the targets (their regions then train
    as background); full: they count as labels (weight 1, not noisy)."""
    if mode == "drop":
        return replace(image, boxes=image.labeled)
    if mode == "full":
        return replace(image, boxes=[replace(b, noisy=False, weight=1.0) for b in image.boxes])
    return replace(image, boxes=[replace(b, weight=lambda_d) if b.noisy else b for b in image.boxes])


def training_set(
    session: Session,
    project_id: int,
    snapshot: int,
    *,
    lambda_d: float,
    noisy: NoisyMode = "dampen",
    images: TrainingImages = "answered",
) -> list[TrainingImage]:
    """The records round N+1 trains on, as of label event ``snapshot``, ordered by image id."""
    query = labeled_images_query(project_id, snapshot, answered=images == "answered")
    chosen = {
        image.id: (image, image.fully_labeled and (image.labeled_event_id or 0) <= snapshot)
        for image in session.scalars(query.order_by(Image.id))
    }
    out = {
        image_id: TrainingImage(
            image.path, image_id=image_id, width=image.width, height=image.height, complete=complete
        )
        for image_id, (image, complete) in chosen.items()
    }
    ids = list(chosen)
    for start in range(0, len(ids), 500):
        stmt = select(Box).where(Box.image_id.in_(ids[start : start + 500])).order_by(Box.image_id, Box.id)
        for box in session.scalars(stmt):
            _add(out[box.image_id], box, snapshot, complete=chosen[box.image_id][1])
    if images == "labeled":  # the old behaviour: background answers taught nothing
        for record in out.values():
            record.negatives.clear()
    return [with_noisy_mode(image, noisy, lambda_d) for image in out.values()]


def _add(record: TrainingImage, box: Box, snapshot: int, *, complete: bool) -> None:
    """Add what ``box`` was as of the snapshot: a label, a negative, a noisy target (as first predicted),
    or nothing. A fully labeled image needs no negatives: everything not labeled is background there."""
    answered_before = box.answer_event_id is None or box.answer_event_id <= snapshot
    if box.status == "labeled" and answered_before:
        record.boxes.append(TargetBox(box.bbox, box.label, box_id=box.id))
        return
    if box.source != "predicted" or complete:
        return  # annotator boxes drawn after the snapshot; leftovers on complete images
    if box.status == "unlabeled" or not answered_before:
        original = box.predicted or {"bbox": box.bbox, "label": box.label}
        record.boxes.append(
            TargetBox(list(original["bbox"]), int(original["label"]), noisy=True, box_id=box.id)
        )
    elif box.status in ("background", "duplicate"):
        record.negatives.append(box.bbox)
