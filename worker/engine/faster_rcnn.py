"""Faster R-CNN + FPN with the dampened loss: torchvision's RPN and RoI heads, subclassed.

Both use torchvision's own matcher and sampler; only the loss is weighted (see losses.py). Targets carry
``weights`` (the loss weight of each box) next to ``boxes`` and ``labels``; without it every box weighs 1.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign

from worker.engine.backbone import build_backbone
from worker.engine.losses import NOISY_ANCHOR, anchor_weights, box_weights, fastrcnn_loss, rpn_loss
from worker.engine.presets import Preset

IMAGE_MEAN = [0.485, 0.456, 0.406]
IMAGE_STD = [0.229, 0.224, 0.225]


class DampenedRPN(RegionProposalNetwork):
    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's assignment, with foreground anchors of a box weighing w != 1 labelled
        NOISY_ANCHOR + w (the loss reads the weight back from the label)."""
        labels = []
        matched_gt_boxes = []
        for anchors_per_image, target in zip(anchors, targets, strict=True):
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:
                matched_gt_boxes.append(
                    torch.zeros(anchors_per_image.shape, dtype=torch.float32, device=anchors_per_image.device)
                )
                labels.append(
                    torch.zeros(
                        (anchors_per_image.shape[0],), dtype=torch.float32, device=anchors_per_image.device
                    )
                )
                continue
            matched_idxs = self.proposal_matcher(self.box_similarity(gt_boxes, anchors_per_image))
            matched_gt_boxes.append(gt_boxes[matched_idxs.clamp(min=0)])
            foreground = matched_idxs >= 0
            labels_per_image = foreground.to(dtype=torch.float32)
            labels_per_image[matched_idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
            labels_per_image[matched_idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            weights = box_weights(target)[matched_idxs.clamp(min=0)]
            weighted = foreground & (weights != 1.0)
            labels_per_image[weighted] = NOISY_ANCHOR + weights[weighted]
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
        return rpn_loss(objectness, pred_bbox_deltas, labels, regression_targets, pos, neg)


class DampenedRoIHeads(RoIHeads):
    def forward(  # type: ignore[override]
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        weights = [
            anchor_weights(box_weights(target), matched, label > 0)
            for target, matched, label in zip(targets or [], matched_idxs, labels, strict=True)
        ]
        loss_classifier, loss_box_reg = fastrcnn_loss(
            class_logits, box_regression, labels, regression_targets, weights
        )
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}


def build_faster_rcnn(
    preset: Preset,
    num_classes: int,
    *,
    pretrained: bool,
    min_size: int | None = None,
    max_size: int | None = None,
    dampened: bool = True,
) -> GeneralizedRCNN:
    """``num_classes`` foreground classes (labels 1..C; 0 is background). ``dampened=False`` builds the
    stock torchvision heads with identical structure (the tests compare the two)."""
    backbone = build_backbone(preset, pretrained=pretrained)
    levels = len(preset.returned_layers) + 1
    if len(preset.anchor_sizes) != levels:
        raise ValueError(f"preset {preset.name}: {levels} feature maps need {levels} anchor sizes")
    anchors = AnchorGenerator(tuple((s,) for s in preset.anchor_sizes), ((0.5, 1.0, 2.0),) * levels)
    rpn_class = DampenedRPN if dampened else RegionProposalNetwork
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
    feature_names = [str(i) for i in range(len(preset.returned_layers))]
    roi_pool = MultiScaleRoIAlign(featmap_names=feature_names, output_size=7, sampling_ratio=2)
    head = TwoMLPHead(backbone.out_channels * 7 * 7, preset.representation_size)
    heads_class = DampenedRoIHeads if dampened else RoIHeads
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
    transform = GeneralizedRCNNTransform(
        min_size or preset.min_size, max_size or preset.max_size, IMAGE_MEAN, IMAGE_STD
    )
    return GeneralizedRCNN(backbone, rpn, roi_heads, transform)
