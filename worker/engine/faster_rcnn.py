"""Faster R-CNN + FPN with the dampened loss: torchvision's RPN and RoI heads, subclassed.

Both use torchvision's own matcher and sampler; the matcher's output is adjusted for a target's
negatives and ignore regions (regions.py) and the loss is weighted (losses.py). Targets carry ``weights``
and ``noisy`` per box next to ``boxes`` and ``labels`` (without them every box is a label of weight 1),
and may carry ``negatives`` and ``ignore`` regions.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import MultiScaleRoIAlign

from worker.engine.backbone import build_backbone
from worker.engine.losses import (
    NOISY_ANCHOR,
    Reading,
    anchor_noisy,
    anchor_weights,
    box_noisy,
    box_weights,
    fastrcnn_loss,
    rpn_loss,
)
from worker.engine.presets import Preset
from worker.engine.regions import BACKGROUND, IGNORED, RegionTransform, match, soft_background
from worker.engine.weights import load_checked, resolve

IMAGE_MEAN = [0.485, 0.456, 0.406]
IMAGE_STD = [0.229, 0.224, 0.225]


class DampenedRPN(RegionProposalNetwork):
    def __init__(self, *args: Any, reading: Reading = "anchor_weights", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: Reading = reading

    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's assignment, after negatives and ignore regions (regions.py), with foreground
        anchors of a noisy box weighing w labelled NOISY_ANCHOR + w (the loss reads w back)."""
        labels = []
        matched_gt_boxes = []
        self._soft: list[Tensor] = []  # read by compute_loss, in the same forward
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            gt_boxes = target["boxes"]
            matched_idxs = match(self.proposal_matcher, anchors_per_image, target)
            low = self.proposal_matcher.low_threshold
            self._soft.append(soft_background(matched_idxs, anchors_per_image, target, low))
            if gt_boxes.numel() == 0:
                matched_gt_boxes.append(torch.zeros_like(anchors_per_image, dtype=torch.float32))
            else:
                matched_gt_boxes.append(gt_boxes[matched_idxs.clamp(min=0)])
            foreground = matched_idxs >= 0
            labels_per_image = foreground.to(dtype=torch.float32)
            labels_per_image[matched_idxs == BACKGROUND] = 0.0
            labels_per_image[matched_idxs == IGNORED] = -1.0
            if gt_boxes.numel() > 0:
                noisy = anchor_noisy(box_noisy(target), matched_idxs, foreground)
                weights = box_weights(target)[matched_idxs.clamp(min=0)]
                labels_per_image[noisy] = NOISY_ANCHOR + weights[noisy]
            labels.append(labels_per_image)
        return labels, matched_gt_boxes

    def compute_loss(
        self,
        objectness: Tensor,
        pred_bbox_deltas: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        sampled_pos, sampled_neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(sampled_pos, dim=0))[0]
        neg = torch.where(torch.cat(sampled_neg, dim=0))[0]
        soft = torch.cat(self._soft) if any(s.any() for s in self._soft) else None
        return rpn_loss(
            objectness, pred_bbox_deltas, labels, regression_targets, pos, neg, self.reading, soft
        )


class DampenedRoIHeads(RoIHeads):
    def __init__(self, *args: Any, reading: Reading = "anchor_weights", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: Reading = reading

    def forward(  # type: ignore[override]
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training or targets is None:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        pairs = list(zip(targets, matched_idxs, labels, strict=True))
        weights = [anchor_weights(box_weights(t), matched, label > 0) for t, matched, label in pairs]
        noisy = [anchor_noisy(box_noisy(t), matched, label > 0) for t, matched, label in pairs]
        soft = self._soft if any(s.any() for s in self._soft) else None
        loss_classifier, loss_box_reg = fastrcnn_loss(
            class_logits, box_regression, labels, regression_targets, weights, noisy, self.reading, soft
        )
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}

    def select_training_samples(  # type: ignore[override]
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """torchvision's sampling, with the matching after negatives and ignore regions (regions.py)."""
        dtype = proposals[0].dtype
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels, soft = [], [], []
        for proposals_in_image, target in zip(proposals, targets, strict=True):
            matched, label, soft_in_image = self._assign(proposals_in_image, target)
            matched_idxs.append(matched)
            labels.append(label)
            soft.append(soft_in_image)
        sampled = self.subsample(labels)
        matched_gt_boxes = []
        for i, keep in enumerate(sampled):
            proposals[i], labels[i], matched_idxs[i], soft[i] = (
                proposals[i][keep],
                labels[i][keep],
                matched_idxs[i][keep],
                soft[i][keep],
            )
            boxes = (
                gt_boxes[i] if gt_boxes[i].numel() else torch.zeros((1, 4), dtype=dtype, device=keep.device)
            )
            matched_gt_boxes.append(boxes[matched_idxs[i]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        self._soft: list[Tensor] = soft  # read by forward, in the same call
        return proposals, matched_idxs, labels, regression_targets

    def _assign(self, proposals: Tensor, target: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """(matched box index clamped to >= 0, label: class, 0 background, -1 ignored, and whether its
        background loss is soft) per proposal."""
        matched = match(self.proposal_matcher, proposals, target)
        soft = soft_background(matched, proposals, target, self.proposal_matcher.low_threshold)
        clamped = matched.clamp(min=0)
        if target["boxes"].numel() == 0:
            label = torch.zeros_like(clamped)
        else:
            label = target["labels"][clamped].to(torch.int64)
        label[matched == BACKGROUND] = 0
        label[matched == IGNORED] = -1  # the sampler skips -1
        return clamped, label, soft


def build_faster_rcnn(
    preset: Preset,
    num_classes: int,
    *,
    weights: str = "none",
    min_size: int | None = None,
    max_size: int | None = None,
    dampened: bool = True,
    reading: Reading = "anchor_weights",
) -> GeneralizedRCNN:
    """``num_classes`` foreground classes (labels 1..C; 0 is background), starting from ``weights``
    (worker/engine/weights.py). ``dampened=False`` builds the stock torchvision heads with identical
    structure (the tests compare the two)."""
    start = resolve(preset, weights)
    backbone = build_backbone(preset, frozen_bn=start.frozen_bn, body_state=start.body)
    taps = len(backbone.body.return_layers)
    levels = taps + 1
    if len(preset.anchor_sizes) != levels:
        raise ValueError(f"preset {preset.name}: {levels} feature maps need {levels} anchor sizes")
    anchors = AnchorGenerator(tuple((s,) for s in preset.anchor_sizes), ((0.5, 1.0, 2.0),) * levels)
    rpn_class = partial(DampenedRPN, reading=reading) if dampened else RegionProposalNetwork
    rpn = rpn_class(
        anchors,
        RPNHead(backbone.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=0.7,
        bg_iou_thresh=0.3,
        batch_size_per_image=preset.rpn_batch_size_per_image,
        positive_fraction=0.5,
        pre_nms_top_n=dict(preset.rpn_pre_nms_top_n),
        post_nms_top_n=dict(preset.rpn_post_nms_top_n),
        nms_thresh=0.7,
    )
    feature_names = [str(i) for i in range(taps)]
    roi_pool = MultiScaleRoIAlign(featmap_names=feature_names, output_size=7, sampling_ratio=2)
    head = TwoMLPHead(backbone.out_channels * 7 * 7, preset.representation_size)
    heads_class = partial(DampenedRoIHeads, reading=reading) if dampened else RoIHeads
    roi_heads = heads_class(
        roi_pool,
        head,
        FastRCNNPredictor(preset.representation_size, num_classes + 1),
        fg_iou_thresh=0.5,
        bg_iou_thresh=0.5,
        batch_size_per_image=preset.box_batch_size_per_image,
        positive_fraction=0.25,
        bbox_reg_weights=None,
        score_thresh=0.05,
        nms_thresh=0.5,
        detections_per_img=preset.detections_per_img,
    )
    # regions resized with the image (stock: boxes only); on fully labeled images the same as stock
    sizes = (min_size or preset.min_size, max_size or preset.max_size)
    transform = RegionTransform(*sizes, IMAGE_MEAN, IMAGE_STD)
    model = GeneralizedRCNN(backbone, rpn, roi_heads, transform)
    if start.detector is not None:
        load_checked(
            model, start.detector, what=f"{weights} weights", remake=CLASS_HEADS if start.remake_heads else ()
        )
    return model


# the layers whose shape depends on the number of classes: made anew for a COCO detector's weights
CLASS_HEADS = (
    "roi_heads.box_predictor.cls_score.weight",
    "roi_heads.box_predictor.cls_score.bias",
    "roi_heads.box_predictor.bbox_pred.weight",
    "roi_heads.box_predictor.bbox_pred.bias",
)
