"""Detectron2's Faster R-CNN with the dampened loss: its RPN, StandardROIHeads and FastRCNNOutputLayers,
subclassed and registered under their own names (config.py selects them).

Matching goes through matching.py (negatives, ignore regions); each loss term is the stock term with
every anchor or proposal matched to a box weighted by that box's weight, normalised as Detectron2
normalises it (losses.combine with its normalizer): with no noisy boxes, exactly the stock loss.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from detectron2.layers import cat
from detectron2.modeling.proposal_generator import PROPOSAL_GENERATOR_REGISTRY, RPN
from detectron2.modeling.proposal_generator.proposal_utils import add_ground_truth_to_proposals
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, FastRCNNOutputLayers, StandardROIHeads
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances
from fvcore.nn import smooth_l1_loss
from torch import Tensor

from worker.engine.d2.matching import match, split
from worker.engine.losses import (
    NOISY_ANCHOR,
    Reading,
    anchor_noisy,
    box_noisy,
    box_weights,
    combine,
    rpn_anchor_weights,
)


def smooth_l1_only(kind: str, where: str) -> None:
    if kind != "smooth_l1":
        raise ValueError(f"the dampened loss supports {where} box regression smooth_l1, not {kind!r}")


@PROPOSAL_GENERATOR_REGISTRY.register()
class DampenedRPN(RPN):
    """Anchor labels as Detectron2 samples them, except that a sampled foreground anchor matched to a
    noisy box of weight w is labelled NOISY_ANCHOR + w (as the torchvision backend does), which the loss
    reads back."""

    reading: Reading = "anchor_weights"

    @torch.jit.unused
    @torch.no_grad()
    def label_and_sample_anchors(
        self, anchors: list[Boxes], gt_instances: list[Instances]
    ) -> tuple[list[Tensor], list[Tensor]]:
        every = Boxes.cat(anchors)
        labels, matched_boxes = [], []
        for instances in gt_instances:
            objects, target = split(instances)
            matched, label = match(self.anchor_matcher, objects.gt_boxes, every, target)
            label = label.to(device=objects.gt_boxes.device)
            if self.anchor_boundary_thresh >= 0:
                label[~every.inside_box(instances.image_size, self.anchor_boundary_thresh)] = -1
            label = self._subsample_labels(label).to(torch.float32)
            if len(objects) == 0:
                matched_boxes.append(torch.zeros_like(every.tensor))
            else:
                matched_boxes.append(objects.gt_boxes.tensor[matched])
                foreground = label == 1
                noisy = anchor_noisy(box_noisy(target), matched, foreground)
                label[noisy] = NOISY_ANCHOR + box_weights(target)[matched][noisy]
            labels.append(label)
        return labels, matched_boxes

    @torch.jit.unused
    def losses(
        self,
        anchors: list[Boxes],
        pred_objectness_logits: list[Tensor],
        gt_labels: list[Tensor],
        pred_anchor_deltas: list[Tensor],
        gt_boxes: list[Tensor],
    ) -> dict[str, Tensor]:
        smooth_l1_only(self.box_reg_loss_type, "RPN")
        labels = torch.stack(gt_labels)  # (N, R): -1 unsampled, 0 background, 1 or NOISY_ANCHOR + w
        valid, positive = labels >= 0, labels >= 1
        weights, noisy = rpn_anchor_weights(labels), labels >= NOISY_ANCHOR
        every = Boxes.cat(anchors).tensor
        target_deltas = torch.stack([self.box2box_transform.get_deltas(every, boxes) for boxes in gt_boxes])
        per_anchor = smooth_l1_loss(
            cat(pred_anchor_deltas, dim=1)[positive], target_deltas[positive], self.smooth_l1_beta, "none"
        ).sum(dim=1)
        localization = per_anchor.new_zeros(labels.shape)
        localization[positive] = per_anchor
        objectness = F.binary_cross_entropy_with_logits(
            cat(pred_objectness_logits, dim=1)[valid], labels[valid].clamp(max=1.0), reduction="none"
        )
        normalizer = self.batch_size_per_image * len(gt_labels)
        counted = torch.ones_like(noisy[valid])
        terms = {
            "loss_rpn_cls": combine(
                objectness, weights[valid], noisy[valid], counted, self.reading, normalizer
            ),
            "loss_rpn_loc": combine(
                localization[valid], weights[valid], noisy[valid], counted, self.reading, normalizer
            ),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in terms.items()}


class DampenedOutputLayers(FastRCNNOutputLayers):
    """The box predictor's two terms, each sampled proposal weighted by its matched box's weight:
    classification over all sampled proposals (a mean, as stock), box regression over the foreground
    ones divided by the sample count (as stock)."""

    reading: Reading = "anchor_weights"

    def losses(self, predictions: tuple[Tensor, Tensor], proposals: list[Instances]) -> dict[str, Tensor]:
        if self.use_sigmoid_ce or self.use_fed_loss:
            raise ValueError("the dampened loss supports the softmax classification of the box head only")
        smooth_l1_only(self.box_reg_loss_type, "RoI")
        scores, deltas = predictions
        classes = cat([p.gt_classes for p in proposals], dim=0)
        n = classes.numel()
        foreground = (classes >= 0) & (classes < self.num_classes)
        weights = torch.where(
            foreground, _field(proposals, "gt_weights", 1.0, scores), torch.ones_like(scores[:, 0])
        )
        noisy = foreground & _field(proposals, "gt_noisy", False, scores).bool()
        counted = torch.ones_like(noisy)
        classification = F.cross_entropy(scores, classes, reduction="none")
        proposal_boxes = cat([p.proposal_boxes.tensor for p in proposals], dim=0)
        gt_boxes = cat(
            [(p.gt_boxes if p.has("gt_boxes") else p.proposal_boxes).tensor for p in proposals], dim=0
        )
        index = torch.where(foreground)[0]
        box_dim = proposal_boxes.shape[1]
        if deltas.shape[1] == box_dim:  # class-agnostic regression
            chosen = deltas[index]
        else:
            chosen = deltas.view(-1, self.num_classes, box_dim)[index, classes[index]]
        per_proposal = smooth_l1_loss(
            chosen,
            self.box2box_transform.get_deltas(proposal_boxes[index], gt_boxes[index]),
            self.smooth_l1_beta,
            "none",
        ).sum(dim=1)
        regression = per_proposal.new_zeros(n)
        regression[index] = per_proposal
        terms = {
            "loss_cls": combine(classification, weights, noisy, counted, self.reading),
            "loss_box_reg": combine(regression, weights, noisy, counted, self.reading, max(n, 1)),
        }
        return {k: v * self.loss_weight.get(k, 1.0) for k, v in terms.items()}


def _field(proposals: list[Instances], name: str, default: float | bool, like: Tensor) -> Tensor:
    """A per-proposal field over the batch; images without boxes have none (stock), so the default."""
    parts = [
        p.get(name).to(like.dtype)
        if p.has(name)
        else torch.full((len(p),), float(default), device=like.device, dtype=like.dtype)
        for p in proposals
    ]
    return cat(parts, dim=0)


@ROI_HEADS_REGISTRY.register()
class DampenedROIHeads(StandardROIHeads):
    """StandardROIHeads with DampenedOutputLayers, whose proposals are matched through matching.py."""

    @classmethod
    def _init_box_head(cls, cfg: Any, input_shape: Any) -> dict[str, Any]:
        parts = super()._init_box_head(cfg, input_shape)
        parts["box_predictor"] = DampenedOutputLayers(cfg, parts["box_head"].output_shape)
        return parts

    @torch.no_grad()
    def label_and_sample_proposals(
        self, proposals: list[Instances], targets: list[Instances]
    ) -> list[Instances]:
        """Detectron2's sampling; ignored proposals (near an ignore region) are never sampled, also on
        an image without boxes."""
        pairs = [split(t) for t in targets]
        objects = [o for o, _ in pairs]
        if self.proposal_append_gt:
            proposals = add_ground_truth_to_proposals(objects, proposals)
        out = []
        for proposals_per_image, (boxes, target) in zip(proposals, pairs, strict=True):
            matched, label = match(
                self.proposal_matcher, boxes.gt_boxes, proposals_per_image.proposal_boxes, target
            )
            label = label.to(matched.device)
            if len(boxes) > 0:
                classes = boxes.gt_classes[matched]
                classes[label == 0] = self.num_classes
            else:
                classes = torch.full_like(matched, self.num_classes)
            classes[label == -1] = -1
            fg, bg = subsample_labels(
                classes, self.batch_size_per_image, self.positive_fraction, self.num_classes
            )
            sampled = torch.cat([fg, bg], dim=0)
            chosen = proposals_per_image[sampled]
            chosen.gt_classes = classes[sampled]
            if len(boxes) > 0:
                for name, value in boxes.get_fields().items():
                    if name.startswith("gt_") and not chosen.has(name):
                        chosen.set(name, value[matched[sampled]])
            out.append(chosen)
        return out


def set_reading(model: torch.nn.Module, reading: Reading) -> None:
    """How every dampened head of ``model`` reads Eq. 3 (losses.py)."""
    for module in model.modules():
        if hasattr(type(module), "reading"):  # the dampened classes of this module and retinanet.py
            setattr(module, "reading", reading)  # noqa: B010
