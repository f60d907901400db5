"""Detectron2 models behind boxal's detector interface (engine/detector.py).

boxal hands a detector RGB images in [0, 1] at their own size and boxes in their pixels. Detectron2 models
take images already resized, in 0-255 and the config's channel order, with ``Instances`` at that size; its
training code logs into an ``EventStorage``. These adapters do that conversion (resizing as torchvision's
GeneralizedRCNNTransform does: the shorter side to ``min_size``, the longer at most ``max_size``), and
predict and re-score with the model's own modules, as the torchvision detectors do.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from detectron2.layers import batched_nms, cat
from detectron2.modeling import GeneralizedRCNN, RetinaNet
from detectron2.structures import Boxes, ImageList, pairwise_iou
from detectron2.utils.events import EventStorage
from torch import Tensor, nn

from worker.engine.d2.matching import to_instances
from worker.engine.detector import Detections, Detector, Rescored
from worker.engine.presets import Preset
from worker.engine.selection import class_detections, dense_candidates


def _plain(model: nn.Module) -> Any:  # Detectron2's modules are untyped
    return getattr(model, "module", model)  # under DDP, the model it wraps


class D2Detector(Detector):
    backend = "detectron2"

    def __init__(
        self, model: nn.Module, preset: Preset, num_classes: int, *, min_size: int, max_size: int, bgr: bool
    ) -> None:
        super().__init__(model, preset, num_classes)
        self.min_size, self.max_size, self.bgr = min_size, max_size, bgr

    def _scale(self, height: int, width: int) -> tuple[int, int]:
        factor = min(self.min_size / min(height, width), self.max_size / max(height, width))
        return round(height * factor), round(width * factor)

    def _inputs(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            size = self._scale(height, width)
            resized = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)[0]
            pixels = resized * 255.0
            item: dict[str, object] = {
                "image": pixels.flip(0) if self.bgr else pixels,
                "height": int(height),
                "width": int(width),
            }
            if targets is not None:
                item["instances"] = to_instances(targets[i], size, (size[1] / width, size[0] / height))
            out.append(item)
        return out

    def losses(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        with EventStorage(0):  # Detectron2's heads log statistics into one
            return self.model(self._inputs(images, targets))

    def _prepare(
        self, images: list[Tensor]
    ) -> tuple[ImageList, dict[str, Tensor], list[tuple[float, float]]]:
        """Padded input batch, backbone features, and (x, y) scale from input to original pixels."""
        model = _plain(self.model)
        batched = self._inputs(images)
        image_list = model.preprocess_image(batched)
        features = model.backbone(image_list.tensor)
        back = [
            (int(b["width"]) / s[1], int(b["height"]) / s[0])  # type: ignore[call-overload]
            for b, s in zip(batched, image_list.image_sizes, strict=True)
        ]
        return image_list, features, back

    @staticmethod
    def _to_original(boxes: Tensor, back: tuple[float, float]) -> Tensor:
        return boxes * boxes.new_tensor([back[0], back[1], back[0], back[1]])

    @staticmethod
    def _to_input(boxes: Tensor, back: tuple[float, float]) -> Tensor:
        return boxes / boxes.new_tensor([back[0], back[1], back[0], back[1]])


class D2FasterRCNNDetector(D2Detector):
    arch = "faster_rcnn"
    has_box_features = True

    def _box_head(self, features: dict[str, Tensor], boxes: list[Boxes]) -> tuple[Tensor, Tensor, Tensor]:
        heads = _plain(self.model).roi_heads
        pooled = heads.box_pooler([features[f] for f in heads.box_in_features], boxes)
        box_features = heads.box_head(pooled)
        scores, deltas = heads.box_predictor(box_features)
        return box_features, scores, deltas

    @torch.no_grad()
    def detect(self, images: list[Tensor], t_d: float) -> list[Detections]:
        model: GeneralizedRCNN = _plain(self.model)
        image_list, features, back = self._prepare(images)
        proposals, _ = model.proposal_generator(image_list, features, None)
        proposal_boxes = [p.proposal_boxes for p in proposals]
        box_features, scores, deltas = self._box_head(features, proposal_boxes)
        predictor = model.roi_heads.box_predictor
        probs = F.softmax(scores, dim=-1)[:, :-1]  # Detectron2's background is the last class
        decoded = predictor.box2box_transform.apply_deltas(deltas, cat([b.tensor for b in proposal_boxes]))
        pooled = self._image_features(list(features.values()))
        counts = [len(b) for b in proposal_boxes]
        out, offset = [], 0
        for i, (boxes, p, size) in enumerate(
            zip(decoded.split(counts), probs.split(counts), image_list.image_sizes, strict=True)
        ):
            n = p.shape[0]
            per_class = Boxes(boxes.reshape(-1, 4))
            per_class.clip(size)
            boxes, flat, labels, rows = class_detections(
                per_class.tensor.reshape(n, -1, 4).expand(n, self.num_classes, 4),  # agnostic: one box
                p,
                t_d,
                predictor.test_nms_thresh,
                predictor.test_topk_per_image,
            )
            out.append(
                Detections(
                    boxes=self._to_original(boxes, back[i]),
                    labels=labels,
                    scores=flat,
                    probs=p[rows],
                    features=box_features[offset + rows],
                    image_feature=pooled[i],
                )
            )
            offset += n
        return out

    @torch.no_grad()
    def rescore(self, images: list[Tensor], boxes: list[Tensor]) -> list[Rescored]:
        _, features, back = self._prepare(images)
        given = [Boxes(self._to_input(b.to(torch.float32), back[i])) for i, b in enumerate(boxes)]
        box_features, scores, _ = self._box_head(features, given)
        probs = F.softmax(scores, dim=-1)[:, :-1]
        pooled = self._image_features(list(features.values()))
        counts = [len(b) for b in given]
        return [
            Rescored(p, f, pooled[i])
            for i, (p, f) in enumerate(zip(probs.split(counts), box_features.split(counts), strict=True))
        ]


class D2RetinaNetDetector(D2Detector):
    """As the torchvision RetinaNet detector: no box features; a detection's probability vector is its
    anchor's per-class sigmoid scores, and a fixed box takes those of the anchor whose decoded box
    overlaps it most."""

    arch = "retinanet"
    has_box_features = False

    def _dense(self, images: list[Tensor]):  # type: ignore[no-untyped-def]
        model: RetinaNet = _plain(self.model)
        image_list, features, back = self._prepare(images)
        levels = [features[f] for f in model.head_in_features]
        logits, deltas = model._transpose_dense_predictions(model.head(levels), [model.num_classes, 4])
        anchors = Boxes.cat(model.anchor_generator(levels)).tensor
        level_sizes = [x.shape[1] for x in logits]
        return model, image_list, levels, back, cat(logits, dim=1), cat(deltas, dim=1), anchors, level_sizes

    @torch.no_grad()
    def detect(self, images: list[Tensor], t_d: float) -> list[Detections]:
        model, image_list, levels, back, logits, deltas, anchors, level_sizes = self._dense(images)
        pooled = self._image_features(levels)
        out = []
        for i, size in enumerate(image_list.image_sizes):
            all_boxes, all_scores, all_labels, all_rows = [], [], [], []
            start = 0
            for count in level_sizes:
                scores, rows, labels = dense_candidates(
                    logits[i, start : start + count], self.num_classes, t_d, model.test_topk_candidates
                )
                rows = rows + start
                decoded = Boxes(model.box2box_transform.apply_deltas(deltas[i, rows], anchors[rows]))
                decoded.clip(size)
                all_boxes.append(decoded.tensor)
                all_scores.append(scores)
                all_labels.append(labels)
                all_rows.append(rows)
                start += count
            boxes, scores = torch.cat(all_boxes), torch.cat(all_scores)
            labels, rows = torch.cat(all_labels), torch.cat(all_rows)
            keep = batched_nms(boxes, scores, labels, model.test_nms_thresh)[: model.max_detections_per_image]
            out.append(
                Detections(
                    boxes=self._to_original(boxes[keep], back[i]),
                    labels=labels[keep],
                    scores=scores[keep],
                    probs=torch.sigmoid(logits[i, rows[keep]]),
                    features=None,
                    image_feature=pooled[i],
                )
            )
        return out

    @torch.no_grad()
    def rescore(self, images: list[Tensor], boxes: list[Tensor]) -> list[Rescored]:
        model, image_list, levels, back, logits, deltas, anchors, _ = self._dense(images)
        pooled = self._image_features(levels)
        out = []
        for i, size in enumerate(image_list.image_sizes):
            given = self._to_input(boxes[i].to(torch.float32), back[i])
            if given.numel() == 0:
                out.append(
                    Rescored(torch.zeros((0, self.num_classes), device=logits.device), None, pooled[i])
                )
                continue
            decoded = Boxes(model.box2box_transform.apply_deltas(deltas[i], anchors))
            decoded.clip(size)
            best = pairwise_iou(Boxes(given), decoded).argmax(dim=1)
            out.append(Rescored(torch.sigmoid(logits[i, best]), None, pooled[i]))
        return out
