"""Fresher noisy targets (the ``noisy_targets: refreshed`` and ``pseudo`` settings, beyond the paper).

The paper's noisy targets are the first model's predictions, frozen. Refreshed, they are the current
model's predictions on each training image, cleaned:

- a prediction overlapping an answered box (a label or a negative) at IoU >= ANSWERED_IOU is dropped:
  that object, or that background, is known;
- class-agnostic suppression keeps one class per object (per-class NMS leaves a wrong-class twin on an
  object, which takes about half of its anchors);
- a prediction scoring at least ``confidence`` becomes a noisy target; one between ``t_d`` and
  ``confidence`` becomes an ignore region (trains as neither object nor background).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import torch
from torchvision.ops import box_iou, nms

from app.rounds.training_set import TargetBox, TrainingImage
from worker.engine.detector import Detections

ANSWERED_IOU = 0.4
SAME_OBJECT_IOU = 0.5


def refresh(
    record: TrainingImage,
    found: Detections,
    *,
    t_d: float,
    confidence: float,
    lambda_d: float,
    uncertain: Literal["ignore", "unknown"] = "ignore",
) -> TrainingImage:
    """``record`` with its noisy boxes replaced by ``found`` (the current model's detections on its
    image, scores >= t_d), cleaned as the module says; its labels and negatives unchanged. Predictions
    below ``confidence`` become ignore regions, or (``unknown``, pseudo-labels) are left out: what nobody
    answered and the model is not sure of is unknown, trained as the record's unknown_background says."""
    boxes, scores, labels = found.boxes.float().reshape(-1, 4), found.scores.float(), found.labels.long()
    keep = scores >= t_d
    answered = [b.bbox for b in record.labeled] + record.negatives
    if answered and keep.any():
        overlap = box_iou(boxes, torch.tensor(answered, dtype=torch.float32)).max(dim=1).values
        keep &= overlap < ANSWERED_IOU
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    one_class = nms(boxes, scores, SAME_OBJECT_IOU)  # class-agnostic: highest score per object
    boxes, scores, labels = boxes[one_class], scores[one_class], labels[one_class]
    sure = scores >= confidence
    noisy = [
        TargetBox(box.tolist(), int(label), noisy=True, weight=lambda_d)
        for box, label in zip(boxes[sure], labels[sure], strict=True)
    ]
    ignore = [box.tolist() for box in boxes[~sure]] if uncertain == "ignore" else []
    return replace(record, boxes=record.labeled + noisy, ignore=ignore)
