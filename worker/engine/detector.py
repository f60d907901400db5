"""The detector interface the rest of boxal uses, and its torchvision implementations.

Class indices are 0..C-1 everywhere outside this module. Images are float tensors (3, H, W) in [0, 1];
boxes are (N, 4) xyxy pixels of the original image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from worker.engine import faster_rcnn, retinanet
from worker.engine.losses import Reading
from worker.engine.presets import Preset
from worker.engine.selection import class_detections, dense_candidates


@dataclass
class Detections:
    """One image's detections with score >= t_d, in original pixels."""

    boxes: Tensor  # (N, 4) float
    labels: Tensor  # (N,) long, 0..C-1
    scores: Tensor  # (N,) float
    probs: Tensor  # (N, C) float: the class-probability vector of each detection
    features: Tensor | None  # (N, D) float: box-head (FC2) feature, Faster R-CNN only
    image_feature: Tensor  # (F,) float: pooled backbone feature of the image


@dataclass
class Rescored:
    """A new model's view of fixed boxes: class probabilities and (Faster R-CNN) box features."""

    probs: Tensor  # (N, C)
    features: Tensor | None  # (N, D)
    image_feature: Tensor  # (F,)


class Detector(ABC):
    arch: str
    has_box_features: bool

    def __init__(self, model: nn.Module, preset: Preset, num_classes: int) -> None:
        self.model = model
        self.preset = preset
        self.num_classes = num_classes

    def losses(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """The named loss terms on a batch. ``targets`` as engine/data.py makes them: boxes (N, 4),
        labels 0..C-1 (N,), weights (N,) float, noisy (N,) bool."""
        return self.model(images, targets)

    @abstractmethod
    def detect(self, images: list[Tensor], t_d: float) -> list[Detections]: ...

    @abstractmethod
    def rescore(self, images: list[Tensor], boxes: list[Tensor]) -> list[Rescored]: ...

    def _image_features(self, features: list[Tensor]) -> Tensor:
        """(B, F): every FPN level average-pooled and concatenated."""
        return torch.cat([level.mean(dim=(2, 3)) for level in features], dim=1)


class FasterRCNNDetector(Detector):
    arch = "faster_rcnn"
    has_box_features = True
    model: GeneralizedRCNN

    @property
    def _heads(self) -> RoIHeads:
        return cast(RoIHeads, self.model.roi_heads)

    def losses(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        # torchvision's Faster R-CNN counts classes from 1 (0 is background)
        return self.model(images, [{**t, "labels": t["labels"] + 1} for t in targets])

    def _features(self, images: list[Tensor]):  # type: ignore[no-untyped-def]
        originals = [tuple(img.shape[-2:]) for img in images]
        image_list, _ = cast(GeneralizedRCNNTransform, self.model.transform)(images)
        features = cast(nn.Module, self.model.backbone)(image_list.tensors)
        return image_list, features, originals

    @torch.no_grad()
    def detect(self, images: list[Tensor], t_d: float) -> list[Detections]:
        model = self.model
        image_list, features, originals = self._features(images)
        proposals, _ = cast(RegionProposalNetwork, model.rpn)(image_list, features)
        heads = self._heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
        class_logits, box_regression = heads.box_predictor(box_features)
        pred_boxes = heads.box_coder.decode(box_regression, proposals)
        pred_scores = F.softmax(class_logits, -1)
        counts = [len(p) for p in proposals]
        pooled = self._image_features(list(features.values()))
        out = []
        offset = 0
        for i, (boxes, scores, size) in enumerate(
            zip(pred_boxes.split(counts), pred_scores.split(counts), image_list.image_sizes, strict=True)
        ):
            n = scores.shape[0]
            boxes, flat, labels, rows = class_detections(
                clip_boxes_to_image(boxes, size)[:, 1:],  # torchvision's class 0 is background
                scores[:, 1:],
                t_d,
                heads.nms_thresh,
                heads.detections_per_img,
            )
            out.append(
                Detections(
                    boxes=resize_boxes(boxes, size, originals[i]),
                    labels=labels,
                    scores=flat,
                    probs=scores[rows, 1:],
                    features=box_features[offset + rows],
                    image_feature=pooled[i],
                )
            )
            offset += n
        return out

    @torch.no_grad()
    def rescore(self, images: list[Tensor], boxes: list[Tensor]) -> list[Rescored]:
        """Run the box head on the given boxes as proposals (no regression, no NMS)."""
        image_list, features, originals = self._features(images)
        heads = self._heads
        scaled = [
            resize_boxes(b.to(image_list.tensors.dtype), originals[i], image_list.image_sizes[i])
            for i, b in enumerate(boxes)
        ]
        box_features = heads.box_head(heads.box_roi_pool(features, scaled, image_list.image_sizes))
        class_logits, _ = heads.box_predictor(box_features)
        probs = F.softmax(class_logits, -1)[:, 1:]
        pooled = self._image_features(list(features.values()))
        counts = [len(b) for b in boxes]
        return [
            Rescored(p, f, pooled[i])
            for i, (p, f) in enumerate(zip(probs.split(counts), box_features.split(counts), strict=True))
        ]


class RetinaNetDetector(Detector):
    """RetinaNet has no per-box features. Its probability vector is the per-class sigmoid scores.

    Re-scoring a fixed box: every anchor's regressed box is decoded, and the box takes the class
    scores of the anchor whose decoded box overlaps it most (ties: the first). A fixed box that is one
    of the model's own detections thus gets exactly that detection's scores.
    """

    arch = "retinanet"
    has_box_features = False
    model: RetinaNet

    def _forward(self, images: list[Tensor]):  # type: ignore[no-untyped-def]
        model = self.model
        originals = [tuple(img.shape[-2:]) for img in images]
        image_list, _ = cast(GeneralizedRCNNTransform, model.transform)(images)
        features = list(cast(nn.Module, model.backbone)(image_list.tensors).values())
        head = cast(nn.Module, model.head)(features)
        anchors = cast(AnchorGenerator, model.anchor_generator)(image_list, features)
        per_level = [f.size(2) * f.size(3) for f in features]
        per_anchor = head["cls_logits"].size(1) // sum(per_level)
        per_level = [n * per_anchor for n in per_level]
        return image_list, features, head, anchors, per_level, originals

    @torch.no_grad()
    def detect(self, images: list[Tensor], t_d: float) -> list[Detections]:
        model = self.model
        image_list, features, head, anchors, per_level, originals = self._forward(images)
        pooled = self._image_features(features)
        out = []
        for i, size in enumerate(image_list.image_sizes):
            logits = head["cls_logits"][i]
            regression = head["bbox_regression"][i]
            all_boxes, all_scores, all_labels, all_rows = [], [], [], []
            start = 0
            for count in per_level:
                scores, rows, labels = dense_candidates(
                    logits[start : start + count], self.num_classes, t_d, model.topk_candidates
                )
                rows = rows + start
                decoded = model.box_coder.decode_single(regression[rows], anchors[i][rows])
                all_boxes.append(clip_boxes_to_image(decoded, size))
                all_scores.append(scores)
                all_labels.append(labels)
                all_rows.append(rows)
                start += count
            boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
            labels, rows = torch.cat(all_labels), torch.cat(all_rows)
            keep = batched_nms(boxes, scores, labels, model.nms_thresh)[: model.detections_per_img]
            out.append(
                Detections(
                    boxes=resize_boxes(boxes[keep], size, originals[i]),
                    labels=labels[keep],
                    scores=scores[keep],
                    probs=torch.sigmoid(logits[rows[keep]]),
                    features=None,
                    image_feature=pooled[i],
                )
            )
        return out

    @torch.no_grad()
    def rescore(self, images: list[Tensor], boxes: list[Tensor]) -> list[Rescored]:
        model = self.model
        image_list, features, head, anchors, _, originals = self._forward(images)
        pooled = self._image_features(features)
        out = []
        for i, size in enumerate(image_list.image_sizes):
            decoded = clip_boxes_to_image(
                model.box_coder.decode_single(head["bbox_regression"][i], anchors[i]), size
            )
            scaled = resize_boxes(boxes[i].to(decoded.dtype), originals[i], size)
            if scaled.numel() == 0:
                out.append(Rescored(torch.zeros((0, self.num_classes)), None, pooled[i]))
                continue
            best = box_iou(scaled, decoded).argmax(dim=1)
            out.append(Rescored(torch.sigmoid(head["cls_logits"][i][best]), None, pooled[i]))
        return out


def build_detector(
    preset: Preset,
    num_classes: int,
    *,
    weights: str = "none",
    min_size: int | None = None,
    max_size: int | None = None,
    dampened: bool = True,
    reading: Reading = "anchor_weights",
    backend: str = "torchvision",
    config: str | None = None,
) -> Detector:
    """A detector of ``preset`` for ``num_classes`` classes, starting from ``weights`` (none, imagenet,
    coco or a file: worker/engine/weights.py); ``dampened=False`` gives torchvision's stock heads (the
    tests compare the two); ``reading`` is how its loss weighs noisy boxes (losses.py). ``backend``
    detectron2 builds Detectron2's model from ``config`` instead (worker/engine/d2/)."""
    if backend == "detectron2":
        from worker.engine.d2 import build_d2_detector

        return build_d2_detector(
            preset,
            num_classes,
            config=config,
            weights=weights,
            min_size=min_size,
            max_size=max_size,
            dampened=dampened,
            reading=reading,
        )
    if preset.arch == "faster_rcnn":
        model = faster_rcnn.build_faster_rcnn(
            preset,
            num_classes,
            weights=weights,
            min_size=min_size,
            max_size=max_size,
            dampened=dampened,
            reading=reading,
        )
        return FasterRCNNDetector(model, preset, num_classes)
    retina = retinanet.build_retinanet(
        preset,
        num_classes,
        weights=weights,
        min_size=min_size,
        max_size=max_size,
        dampened=dampened,
        reading=reading,
    )
    return RetinaNetDetector(retina, preset, num_classes)
