"""RetinaNet + FPN with the dampened loss: torchvision's heads subclassed (losses.py), its matcher's
output adjusted for negatives and ignore regions (regions.py)."""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)

from worker.engine.backbone import build_backbone
from worker.engine.faster_rcnn import IMAGE_MEAN, IMAGE_STD
from worker.engine.losses import Reading, box_regression_loss, focal_loss
from worker.engine.presets import Preset
from worker.engine.regions import RegionTransform, match, soft_background
from worker.engine.weights import load_checked, resolve


class DampenedClassificationHead(RetinaNetClassificationHead):
    def __init__(self, *args: Any, reading: Reading = "anchor_weights", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: Reading = reading

    def compute_loss(self, targets, head_outputs, matched_idxs):  # type: ignore[no-untyped-def]
        return focal_loss(
            head_outputs["cls_logits"], targets, matched_idxs, self.BETWEEN_THRESHOLDS, self.reading
        )


class DampenedRegressionHead(RetinaNetRegressionHead):
    def __init__(self, *args: Any, reading: Reading = "anchor_weights", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reading: Reading = reading

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs):  # type: ignore[no-untyped-def]
        if self._loss_type not in ("l1", "smooth_l1"):
            raise ValueError(
                f"the dampened RetinaNet box loss supports l1 and smooth_l1, not {self._loss_type}"
            )
        return box_regression_loss(
            head_outputs["bbox_regression"],
            anchors,
            targets,
            matched_idxs,
            self.box_coder.encode_single,
            self._loss_type,
            self.reading,
        )


class DampenedRetinaNetHead(RetinaNetHead):
    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_convs: int = 4,
        reading: Reading = "anchor_weights",
    ) -> None:
        nn.Module.__init__(self)
        self.classification_head = DampenedClassificationHead(
            in_channels, num_anchors, num_classes, reading=reading
        )
        self.regression_head = DampenedRegressionHead(in_channels, num_anchors, reading=reading)
        for head in (self.classification_head, self.regression_head):
            head.conv = head.conv[:num_convs]


class DampenedRetinaNet(RetinaNet):
    """torchvision's RetinaNet whose anchor matching honours a target's negatives and ignore regions."""

    def compute_loss(self, targets, head_outputs, anchors):  # type: ignore[no-untyped-def]
        matched_idxs = [
            match(self.proposal_matcher, anchors_per_image, target)
            for anchors_per_image, target in zip(anchors, targets, strict=True)
        ]
        low = self.proposal_matcher.low_threshold
        targets = [  # the focal loss reads which background anchors weigh the model's own belief
            {**t, "soft_background": soft_background(m, a, t, low)}
            for t, m, a in zip(targets, matched_idxs, anchors, strict=True)
        ]
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)


def octave_sizes(size: int) -> tuple[int, int, int]:
    """RetinaNet's three anchor sizes per level: the base size and two steps of a third of an octave."""
    return size, int(size * 2 ** (1 / 3)), int(size * 2 ** (2 / 3))


def build_retinanet(
    preset: Preset,
    num_classes: int,
    *,
    weights: str = "none",
    min_size: int | None = None,
    max_size: int | None = None,
    dampened: bool = True,
    reading: Reading = "anchor_weights",
) -> RetinaNet:
    """``num_classes`` foreground classes, labels 0..C-1 (RetinaNet has no background logit), starting
    from ``weights`` (worker/engine/weights.py)."""
    start = resolve(preset, weights)
    backbone = build_backbone(preset, frozen_bn=start.frozen_bn, body_state=start.body)
    levels = len(backbone.body.return_layers) + 2  # P6, P7
    sizes = tuple(octave_sizes(s) for s in preset.anchor_sizes[:levels])
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * levels)
    num_anchors = anchors.num_anchors_per_location()[0]
    if dampened:
        head: RetinaNetHead = DampenedRetinaNetHead(
            backbone.out_channels, num_anchors, num_classes, preset.retinanet_convs, reading
        )
    else:
        head = RetinaNetHead(backbone.out_channels, num_anchors, num_classes)
        for sub in (head.classification_head, head.regression_head):
            sub.conv = sub.conv[: preset.retinanet_convs]
    model = (DampenedRetinaNet if dampened else RetinaNet)(
        backbone,
        num_classes,
        min_size=min_size or preset.min_size,
        max_size=max_size or preset.max_size,
        image_mean=IMAGE_MEAN,
        image_std=IMAGE_STD,
        anchor_generator=anchors,
        head=head,
        detections_per_img=preset.detections_per_img,
        score_thresh=0.05,
    )
    stock = model.transform  # regions resized with the image (stock: boxes only)
    model.transform = RegionTransform(stock.min_size, stock.max_size, stock.image_mean, stock.image_std)
    if start.detector is not None:
        remake = CLASS_HEADS if start.remake_heads else ()
        load_checked(model, start.detector, what=f"{weights} weights", remake=remake)
    return model


# the layers whose shape depends on the number of classes: made anew for a COCO detector's weights
CLASS_HEADS = ("head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias")
