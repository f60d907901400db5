"""The dampened loss (paper Eq. 3) as per-anchor weights, exactly as DESIGN.md defines it.

An anchor or proposal that torchvision's own matcher assigns to a noisy box has its loss multiplied by
``lambda_d``; every other sampled anchor or proposal (background included) keeps weight 1; each term is
normalised by the same counts as the stock torchvision term. So with no noisy boxes each term equals
stock torchvision's, ``lambda_d = 1`` equals treating noisy boxes as labels, and ``lambda_d = 0`` gives
noisy anchors zero gradient without turning them into background.

Pure functions over tensors; the model classes in faster_rcnn.py and retinanet.py call them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

# RPN anchor labels as torchvision makes them (1 foreground, 0 background, -1 ignored), plus this one:
# a foreground anchor whose matched box is noisy. The stock sampler treats labels >= 1 as positives.
NOISY_ANCHOR = 2.0


def anchor_weights(noisy: Tensor, matched_idxs: Tensor, foreground: Tensor, lambda_d: float) -> Tensor:
    """Weight per anchor: ``lambda_d`` where a foreground anchor matches a noisy box, else 1.

    noisy: (G,) bool per target box; matched_idxs: (A,) long index into the boxes (any value where
    not foreground); foreground: (A,) bool.
    """
    weights = torch.ones(matched_idxs.shape, dtype=torch.float32, device=matched_idxs.device)
    if noisy.numel() == 0:
        return weights
    hit = foreground & noisy[matched_idxs.clamp(min=0, max=noisy.numel() - 1)]
    weights[hit] = lambda_d
    return weights


def rpn_loss(
    objectness: Tensor,
    pred_bbox_deltas: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    sampled_pos: Tensor,
    sampled_neg: Tensor,
    lambda_d: float,
) -> tuple[Tensor, Tensor]:
    """torchvision's RPN loss with noisy anchors (label NOISY_ANCHOR) weighted by lambda_d.

    objectness: (A_total, 1) logits; pred_bbox_deltas: (A_total, 4); labels, regression_targets: per image.
    sampled_pos, sampled_neg: flat indices chosen by torchvision's BalancedPositiveNegativeSampler.
    """
    sampled = torch.cat([sampled_pos, sampled_neg], dim=0)
    all_labels = torch.cat(labels, dim=0)
    all_targets = torch.cat(regression_targets, dim=0)
    weights = torch.where(all_labels == NOISY_ANCHOR, lambda_d, 1.0)
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
    lambda_d: float,
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
        weights = anchor_weights(_noisy(target), matched, foreground, lambda_d)[valid]
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
    lambda_d: float,
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
        noisy = _noisy(target)
        weights = torch.where(noisy[matched[foreground]], lambda_d, 1.0) if noisy.numel() else 1.0
        losses.append((per_anchor * weights).sum() / max(1, foreground.numel()))
    return sum(losses) / max(1, len(targets))


def _noisy(target: dict[str, Tensor]) -> Tensor:
    noisy = target.get("noisy")
    if noisy is None:
        return torch.zeros(target["boxes"].shape[0], dtype=torch.bool, device=target["boxes"].device)
    return noisy
