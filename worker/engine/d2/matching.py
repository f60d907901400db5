"""boxal's targets inside Detectron2: how they travel as ``Instances`` and how its matchers honour them.

Detectron2 moves each image's targets as one ``Instances`` whose fields all have one row per box. A
boxal target also has negatives and ignore regions, which are not objects; they travel as extra rows
told apart by ``gt_role`` and are split off again before any matching:

- ``gt_boxes``, ``gt_classes``: as Detectron2 has them (classes 0..C-1);
- ``gt_weights`` (float), ``gt_noisy`` (bool): the box's loss weight and whether it is a noisy target;
- ``gt_role``: TARGET, NEGATIVE or IGNORE.

``match`` is Detectron2's matching followed by regions.py's relabelling, in Detectron2's label convention
(1 foreground, 0 background, -1 ignored): the same rules as the torchvision backend.
"""

from __future__ import annotations

import torch
from detectron2.modeling.matcher import Matcher
from detectron2.structures import Boxes, Instances, pairwise_iou
from torch import Tensor

from worker.engine.regions import BACKGROUND, IGNORED, relabel, scale_regions

TARGET, NEGATIVE, IGNORE = 0, 1, 2


def to_instances(
    target: dict[str, Tensor], image_size: tuple[int, int], scale: tuple[float, float]
) -> Instances:
    """One image's boxal target (engine/data.py's tensors, original pixels) as ``Instances`` at the model's
    input size; ``scale`` is (x, y) from original to input pixels."""
    target = scale_regions({**target, "boxes": target["boxes"].reshape(-1, 4)}, *scale)  # as torchvision's
    boxes = target["boxes"]
    device = boxes.device
    negatives = target.get("negatives", torch.zeros((0, 4), device=device)).reshape(-1, 4)
    ignore = target.get("ignore", torch.zeros((0, 4), device=device)).reshape(-1, 4)
    n, extra = boxes.shape[0], negatives.shape[0] + ignore.shape[0]
    weights = target.get("weights", torch.ones(n, device=device)).to(torch.float32)
    noisy = target.get("noisy", torch.zeros(n, dtype=torch.bool, device=device))
    out = Instances(image_size)
    out.gt_boxes = Boxes(torch.cat([boxes, negatives, ignore]).to(torch.float32))
    out.gt_classes = torch.cat(
        [target["labels"].to(torch.int64), torch.zeros(extra, dtype=torch.int64, device=device)]
    )
    out.gt_weights = torch.cat([weights, torch.zeros(extra, device=device)])
    out.gt_noisy = torch.cat([noisy, torch.zeros(extra, dtype=torch.bool, device=device)])
    out.gt_role = torch.cat(
        [
            torch.full((n,), TARGET, dtype=torch.int64, device=device),
            torch.full((negatives.shape[0],), NEGATIVE, dtype=torch.int64, device=device),
            torch.full((ignore.shape[0],), IGNORE, dtype=torch.int64, device=device),
        ]
    )
    return out


def split(instances: Instances) -> tuple[Instances, dict[str, Tensor]]:
    """The object rows (``Instances`` as Detectron2's heads expect them) and regions.py's target dict
    (boxes, weights, noisy, negatives, ignore). Stock ``Instances`` (no ``gt_role``) are all objects."""
    if not instances.has("gt_role"):
        return instances, {"boxes": instances.gt_boxes.tensor}
    role = instances.gt_role
    objects = instances[role == TARGET]
    regions = instances.gt_boxes.tensor
    return objects, {
        "boxes": objects.gt_boxes.tensor,
        "weights": objects.gt_weights,
        "noisy": objects.gt_noisy,
        "negatives": regions[role == NEGATIVE],
        "ignore": regions[role == IGNORE],
    }


def match(matcher: Matcher, boxes: Boxes, anchors: Boxes, target: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(matched box index, label 1/0/-1) per anchor or proposal: Detectron2's matcher, then the
    target's negatives and ignore regions (regions.py). Without either, exactly the matcher's output."""
    quality = pairwise_iou(boxes, anchors)
    matched, labels = matcher(quality)
    negatives, ignore = target.get("negatives"), target.get("ignore")
    if (negatives is None or negatives.numel() == 0) and (ignore is None or ignore.numel() == 0):
        return matched, labels
    labels = labels.to(matched.device)
    torchvision_style = torch.where(
        labels == 1,
        matched,
        torch.where(labels == 0, torch.full_like(matched, BACKGROUND), torch.full_like(matched, IGNORED)),
    )
    low, high = matcher.thresholds[1], matcher.thresholds[-2]
    out = relabel(torchvision_style, quality if len(boxes) else None, anchors.tensor, target, low, high)
    relabelled = torch.where(out >= 0, 1, torch.where(out == BACKGROUND, 0, -1)).to(labels.dtype)
    return out.clamp(min=0), relabelled
