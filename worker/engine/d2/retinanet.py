"""Detectron2's RetinaNet with the dampened loss, registered as ``DampenedRetinaNet``.

Anchors are matched through matching.py (negatives, ignore regions); the focal and box terms weigh each
anchor matched to a box by that box's weight and divide by Detectron2's own normaliser (a running mean of
the foreground count, noisy anchors counted as stock counts them). No noisy boxes: the stock loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.layers import cat
from detectron2.modeling.meta_arch import META_ARCH_REGISTRY, RetinaNet
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from fvcore.nn import sigmoid_focal_loss_jit, smooth_l1_loss
from torch import Tensor

from worker.engine.d2.matching import match, split
from worker.engine.d2.rcnn import smooth_l1_only
from worker.engine.losses import Reading, anchor_noisy, anchor_weights, box_noisy, box_weights, combine


@META_ARCH_REGISTRY.register()
class DampenedRetinaNet(RetinaNet):
    reading: Reading = "anchor_weights"

    def forward_training(  # type: ignore[override]
        self,
        images: object,
        features: list[Tensor],
        predictions: list[list[Tensor]],
        gt_instances: list[Instances],
    ) -> dict[str, Tensor]:
        logits, deltas = self._transpose_dense_predictions(predictions, [self.num_classes, 4])
        anchors = self.anchor_generator(features)
        every = Boxes.cat(anchors)
        labels, boxes, weights, noisy = [], [], [], []
        for instances in gt_instances:
            objects, target = split(instances)
            matched, label = match(self.anchor_matcher, objects.gt_boxes, every, target)
            label = label.to(matched.device)
            foreground = label == 1
            if len(objects) > 0:
                boxes.append(objects.gt_boxes.tensor[matched])
                classes = objects.gt_classes[matched]
                classes[label == 0] = self.num_classes
                classes[label == -1] = -1
            else:
                boxes.append(torch.zeros_like(every.tensor))
                classes = torch.full_like(matched, self.num_classes)
                classes[label == -1] = -1
            labels.append(classes)
            weights.append(anchor_weights(box_weights(target), matched, foreground))
            noisy.append(anchor_noisy(box_noisy(target), matched, foreground))
        return self._dampened_losses(
            every.tensor, logits, torch.stack(labels), deltas, boxes, torch.stack(weights), torch.stack(noisy)
        )

    def _dampened_losses(
        self,
        anchors: Tensor,
        logits: list[Tensor],
        labels: Tensor,
        deltas: list[Tensor],
        boxes: list[Tensor],
        weights: Tensor,
        noisy: Tensor,
    ) -> dict[str, Tensor]:
        smooth_l1_only(self.box_reg_loss_type, "RetinaNet")
        valid = labels >= 0
        positive = valid & (labels != self.num_classes)
        count = int(positive.sum().item())
        get_event_storage().put_scalar("num_pos_anchors", count / labels.shape[0])
        normalizer = self._ema_update("loss_normalizer", max(count, 1), 100)
        targets = F.one_hot(labels[valid], num_classes=self.num_classes + 1)[:, :-1]
        flat = cat(logits, dim=1)
        focal = sigmoid_focal_loss_jit(
            flat[valid],
            targets.to(flat.dtype),
            alpha=self.focal_loss_alpha,
            gamma=self.focal_loss_gamma,
            reduction="none",
        ).sum(dim=1)
        target_deltas = torch.stack([self.box2box_transform.get_deltas(anchors, b) for b in boxes])
        regression = smooth_l1_loss(
            cat(deltas, dim=1)[positive], target_deltas[positive], self.smooth_l1_beta, "none"
        ).sum(dim=1)
        return {
            "loss_cls": combine(
                focal, weights[valid], noisy[valid], torch.ones_like(noisy[valid]), self.reading, normalizer
            ),
            "loss_box_reg": combine(
                regression, weights[positive], noisy[positive], positive[positive], self.reading, normalizer
            ),
        }
