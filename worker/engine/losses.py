"""The dampened loss (paper Eq. 3) as per-anchor weights, exactly as DESIGN.md defines it.

An anchor or proposal that torchvision's own matcher assigns to a box has its loss multiplied by that
box's weight (the target's ``weights``: 1 for labels, ``lambda_d`` for noisy boxes, see
app/rounds/training_set.py); every other sampled anchor or proposal (background included) keeps weight
1; each term is normalised by the same counts as the stock torchvision term. So with no noisy boxes each
term equals stock torchvision's, ``lambda_d = 1`` equals treating noisy boxes as labels, and
``lambda_d = 0`` gives noisy anchors zero gradient without turning them into background.

Pure functions over tensors; the model classes in faster_rcnn.py and retinanet.py call them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

# RPN anchor labels as torchvision makes them (1 foreground, 0 background, -1 ignored), plus these: a
# foreground anchor whose matched box is noisy is labelled NOISY_ANCHOR + that box's weight (in [0, 1]),
# so the weight reaches the loss through torchvision's own code path. The stock sampler treats labels
# >= 1 as positives, and the objectness target is the label clamped to 1.
NOISY_ANCHOR = 2.0


def anchor_weights(box_weights: Tensor, matched_idxs: Tensor, foreground: Tensor) -> Tensor:
    """Weight per anchor: its matched box's weight where the anchor is foreground, else 1.

    box_weights: (G,) float per target box; matched_idxs: (A,) long index into the boxes (any value
    where not foreground); foreground: (A,) bool.
    """
    weights = torch.ones(matched_idxs.shape, dtype=torch.float32, device=matched_idxs.device)
    if box_weights.numel() == 0:
        return weights
    matched = box_weights.to(weights.dtype)[matched_idxs.clamp(min=0, max=box_weights.numel() - 1)]
    return torch.where(foreground, matched, weights)


def rpn_anchor_weights(labels: Tensor) -> Tensor:
    """Weights of RPN anchors from their labels: NOISY_ANCHOR + w gives w, any other label 1."""
    return torch.where(labels >= NOISY_ANCHOR, labels - NOISY_ANCHOR, torch.ones_like(labels))


def rpn_loss(
    objectness: Tensor,
    pred_bbox_deltas: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    sampled_pos: Tensor,
    sampled_neg: Tensor,
) -> tuple[Tensor, Tensor]:
    """torchvision's RPN loss with noisy anchors (label NOISY_ANCHOR + w) weighted by their w.

    objectness: (A_total, 1) logits; pred_bbox_deltas: (A_total, 4); labels, regression_targets: per image.
    sampled_pos, sampled_neg: flat indices chosen by torchvision's BalancedPositiveNegativeSampler.
    """
    sampled = torch.cat([sampled_pos, sampled_neg], dim=0)
    all_labels = torch.cat(labels, dim=0)
    all_targets = torch.cat(regression_targets, dim=0)
    weights = rpn_anchor_weights(all_labels)
    box = F.smooth_l1_loss(
        pred_bbox_deltas[sampled_pos], all_targets[sampled_pos], beta=1 / 9, reduction="none"
    )
    box_loss = (box.sum(dim=1) * weights[sampled_pos]).sum() / sampled.numel()
    bce = F.binary_cross_entropy_with_logits(
        objectness.flatten()[sampled], all_labels[sampled].clamp(max=1.0), reduction="none"
    )
    objectness_loss = (bce * weights[sampled]).sum() / sampled.numel()
    return objectness_loss, box_loss


def fastrcnn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    weights: list[Tensor],
) -> tuple[Tensor, Tensor]:
    """torchvision's fastrcnn_loss with a weight per sampled proposal (both terms divided by the count)."""
    all_labels = torch.cat(labels, dim=0)
    all_targets = torch.cat(regression_targets, dim=0)
    all_weights = torch.cat(weights, dim=0)
    count = all_labels.numel()
    classification = (F.cross_entropy(class_logits, all_labels, reduction="none") * all_weights).sum() / count
    positive = torch.where(all_labels > 0)[0]
    n = class_logits.shape[0]
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    box = F.smooth_l1_loss(
        box_regression[positive, all_labels[positive]], all_targets[positive], beta=1 / 9, reduction="none"
    )
    box_loss = (box.sum(dim=1) * all_weights[positive]).sum() / count
    return classification, box_loss


def focal_loss(
    cls_logits: Tensor,
    targets: list[dict[str, Tensor]],
    matched_idxs: list[Tensor],
    between_thresholds: int,
) -> Tensor:
    """torchvision's RetinaNet focal loss with per-anchor weights (normalised by the foreground count)."""
    losses = []
    for target, logits, matched in zip(targets, cls_logits, matched_idxs, strict=True):
        foreground = matched >= 0
        num_foreground = foreground.sum()
        gt = torch.zeros_like(logits)
        gt[foreground, target["labels"][matched[foreground]]] = 1.0
        valid = matched != between_thresholds
        weights = anchor_weights(box_weights(target), matched, foreground)[valid]
        per_anchor = sigmoid_focal_loss(logits[valid], gt[valid], reduction="none").sum(dim=1)
        losses.append((per_anchor * weights).sum() / max(1, num_foreground))
    return sum(losses) / len(targets)


def box_regression_loss(
    bbox_regression: Tensor,
    anchors: list[Tensor],
    targets: list[dict[str, Tensor]],
    matched_idxs: list[Tensor],
    encode: Callable[[Tensor, Tensor], Tensor],
    loss_type: str,
) -> Tensor:
    """torchvision's RetinaNet box loss (l1 or smooth_l1, sum per anchor) with per-anchor weights."""
    losses = []
    for target, regression, anchors_per_image, matched in zip(
        targets, bbox_regression, anchors, matched_idxs, strict=True
    ):
        foreground = torch.where(matched >= 0)[0]
        matched_boxes = target["boxes"][matched[foreground]]
        encoded = encode(matched_boxes, anchors_per_image[foreground])
        if loss_type == "l1":
            per_anchor = F.l1_loss(regression[foreground], encoded, reduction="none").sum(dim=1)
        else:
            per_anchor = F.smooth_l1_loss(regression[foreground], encoded, reduction="none", beta=1.0).sum(
                dim=1
            )
        weights = box_weights(target)[matched[foreground]]
        losses.append((per_anchor * weights).sum() / max(1, foreground.numel()))
    return cast(Tensor, sum(losses)) / max(1, len(targets))


def box_weights(target: dict[str, Tensor]) -> Tensor:
    """(G,) loss weight per target box; a target without ``weights`` (stock torchvision's) weighs 1."""
    weights = target.get("weights")
    if weights is None:
        return torch.ones(target["boxes"].shape[0], device=target["boxes"].device)
    return weights
