"""The dampened loss (paper Eq. 3), L = L_labeled + lambda_d * L_noisy, for every detector loss term.

Each term splits the anchors (or proposals) it sums over into those matched to a noisy box and the rest
(matched to a label, or background). Every anchor matched to a box has its loss multiplied by that box's
weight (the target's ``weights``: 1 for labels, ``lambda_d`` for noisy boxes, see
app/rounds/training_set.py). Then, by the project's ``loss_reading``:

- ``anchor_weights`` (default, DESIGN.md): the weighted sum is normalised by the same count as the stock
  torchvision term. With no noisy boxes each term equals stock torchvision's; ``lambda_d = 1`` equals
  treating noisy boxes as labels; ``lambda_d = 0`` gives noisy anchors zero gradient without turning them
  into background; the loss is linear in ``lambda_d``.
- ``group_means`` (the literal reading): each group is normalised by its own count, so L_labeled is the
  mean over the labeled group and L_noisy the mean over the noisy one. With no noisy boxes this too is
  the stock term; otherwise one noisy anchor can weigh as much as all labeled ones together.

Pure functions over tensors; the model classes in faster_rcnn.py and retinanet.py call them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

from worker.engine.regions import soft_weights

Reading = Literal["anchor_weights", "group_means"]

# RPN anchor labels as torchvision makes them (1 foreground, 0 background, -1 ignored), plus these: a
# foreground anchor whose matched box is noisy is labelled NOISY_ANCHOR + that box's weight (in [0, 1]),
# so the weight reaches the loss through torchvision's own code path. The stock sampler treats labels
# >= 1 as positives, and the objectness target is the label clamped to 1.
NOISY_ANCHOR = 2.0


def box_weights(target: dict[str, Tensor]) -> Tensor:
    """(G,) loss weight per target box; a target without ``weights`` (stock torchvision's) weighs 1."""
    weights = target.get("weights")
    if weights is None:
        return torch.ones(target["boxes"].shape[0], device=target["boxes"].device)
    return weights


def box_noisy(target: dict[str, Tensor]) -> Tensor:
    """(G,) bool per target box: a noisy target (an unanswered prediction)."""
    noisy = target.get("noisy")
    if noisy is None:
        return torch.zeros(target["boxes"].shape[0], dtype=torch.bool, device=target["boxes"].device)
    return noisy


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


def anchor_noisy(noisy: Tensor, matched_idxs: Tensor, foreground: Tensor) -> Tensor:
    """(A,) bool: foreground anchors matched to a noisy box."""
    if noisy.numel() == 0:
        return torch.zeros(matched_idxs.shape, dtype=torch.bool, device=matched_idxs.device)
    return foreground & noisy[matched_idxs.clamp(min=0, max=noisy.numel() - 1)]


def combine(
    per_anchor: Tensor,
    weights: Tensor,
    noisy: Tensor,
    counted: Tensor,
    reading: Reading,
    normalizer: float | Tensor | None = None,
) -> Tensor:
    """One loss term from per-anchor losses (A,), weights (A,) and noisy (A,) bool over the anchors it
    sums, normalised over ``counted`` (A,) bool: the anchors the stock term counts (its denominator).

    ``normalizer``: a stock term whose denominator is not that count (Detectron2's RPN divides by the
    sample size it asked for, its RetinaNet by a running mean of positives); ``group_means`` then scales
    its two means by count / normalizer, so that without noisy boxes it is still the stock term."""
    weighted = per_anchor * weights
    count = counted.sum().clamp(min=1)
    if reading == "anchor_weights":
        return weighted.sum() / (count if normalizer is None else normalizer)
    labeled_count = (counted & ~noisy).sum().clamp(min=1)
    noisy_count = (counted & noisy).sum().clamp(min=1)
    means = weighted[~noisy].sum() / labeled_count + weighted[noisy].sum() / noisy_count
    return means if normalizer is None else means * count / normalizer


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
    reading: Reading = "anchor_weights",
    soft: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """torchvision's RPN loss with noisy anchors (label NOISY_ANCHOR + w) weighted by their w, and the
    ``soft`` (A_total,) bool background anchors by the model's background probability 1 - sigmoid.

    objectness: (A_total, 1) logits; pred_bbox_deltas: (A_total, 4); labels, regression_targets: per image.
    sampled_pos, sampled_neg: flat indices chosen by torchvision's BalancedPositiveNegativeSampler.
    """
    sampled = torch.cat([sampled_pos, sampled_neg], dim=0)  # positives first
    all_labels = torch.cat(labels, dim=0)[sampled]
    weights = rpn_anchor_weights(all_labels)
    if soft is not None:
        logits = objectness.flatten()[sampled]
        weights = soft_weights(weights, soft[sampled], 1 - torch.sigmoid(logits.float()))
    noisy = all_labels >= NOISY_ANCHOR
    counted = torch.ones_like(noisy)
    # only positives have regression targets (a background anchor's may be infinite)
    positive = F.smooth_l1_loss(
        pred_bbox_deltas[sampled_pos],
        torch.cat(regression_targets, dim=0)[sampled_pos],
        beta=1 / 9,
        reduction="none",
    ).sum(dim=1)
    # the loss's own dtype: under CUDA autocast the deltas are float16 and smooth_l1 runs in float32
    box = positive.new_zeros(sampled.numel())
    box[: sampled_pos.numel()] = positive
    box_loss = combine(box, weights, noisy, counted, reading)
    bce = F.binary_cross_entropy_with_logits(
        objectness.flatten()[sampled], all_labels.clamp(max=1.0), reduction="none"
    )
    return combine(bce, weights, noisy, counted, reading), box_loss


def fastrcnn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: list[Tensor],
    regression_targets: list[Tensor],
    weights: list[Tensor],
    noisy: list[Tensor] | None = None,
    reading: Reading = "anchor_weights",
    soft: list[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """torchvision's fastrcnn_loss with a weight per sampled proposal (both terms over the sample count);
    ``soft`` background proposals (bool per image) weigh the model's background probability (softmax)."""
    all_labels = torch.cat(labels, dim=0)
    all_targets = torch.cat(regression_targets, dim=0)
    all_weights = torch.cat(weights, dim=0)
    if soft is not None:
        p_background = F.softmax(class_logits.float(), dim=-1)[:, 0]
        all_weights = soft_weights(all_weights, torch.cat(soft, dim=0), p_background)
    all_noisy = torch.cat(noisy, dim=0) if noisy else torch.zeros_like(all_labels, dtype=torch.bool)
    counted = torch.ones_like(all_noisy)
    classification = F.cross_entropy(class_logits, all_labels, reduction="none")
    positive = torch.where(all_labels > 0)[0]
    n = class_logits.shape[0]
    box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
    regression = F.smooth_l1_loss(
        box_regression[positive, all_labels[positive]], all_targets[positive], beta=1 / 9, reduction="none"
    ).sum(dim=1)
    box = regression.new_zeros(n)  # float32 under autocast, as above
    box[positive] = regression
    return (
        combine(classification, all_weights, all_noisy, counted, reading),
        combine(box, all_weights, all_noisy, counted, reading),
    )


def focal_loss(
    cls_logits: Tensor,
    targets: list[dict[str, Tensor]],
    matched_idxs: list[Tensor],
    between_thresholds: int,
    reading: Reading = "anchor_weights",
) -> Tensor:
    """torchvision's RetinaNet focal loss with per-anchor weights (normalised by the foreground count); a
    target's ``soft_background`` (A,) bool anchors weigh the model's background probability, 1 - the
    highest class sigmoid."""
    losses = []
    for target, logits, matched in zip(targets, cls_logits, matched_idxs, strict=True):
        foreground = matched >= 0
        gt = torch.zeros_like(logits)
        gt[foreground, target["labels"][matched[foreground]]] = 1.0
        valid = matched != between_thresholds
        weights = anchor_weights(box_weights(target), matched, foreground)
        soft = target.get("soft_background")
        if soft is not None:
            p_background = 1 - torch.sigmoid(logits.float()).max(dim=1).values
            weights = soft_weights(weights, soft, p_background)
        weights = weights[valid]
        noisy = anchor_noisy(box_noisy(target), matched, foreground)[valid]
        per_anchor = sigmoid_focal_loss(logits[valid], gt[valid], reduction="none").sum(dim=1)
        losses.append(combine(per_anchor, weights, noisy, foreground[valid], reading))
    return torch.stack(losses).sum() / len(targets)


def box_regression_loss(
    bbox_regression: Tensor,
    anchors: list[Tensor],
    targets: list[dict[str, Tensor]],
    matched_idxs: list[Tensor],
    encode: Callable[[Tensor, Tensor], Tensor],
    loss_type: str,
    reading: Reading = "anchor_weights",
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
        noisy = box_noisy(target)[matched[foreground]]
        counted = torch.ones_like(noisy)
        losses.append(combine(per_anchor, weights, noisy, counted, reading))
    return torch.stack(losses).sum() / max(1, len(targets))
