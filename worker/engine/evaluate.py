"""mAP on a test set with pycocotools (never a hand-written mAP)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from app.rounds.training_set import TrainingImage
from worker.engine.data import load_image
from worker.engine.detector import Detector
from worker.engine.inference import predict

EVAL_THRESHOLD = 0.01


def coco_map(
    items: list[TrainingImage],
    detections: list[tuple[list[list[float]], list[int], list[float]]],
    num_classes: int,
) -> dict[str, Any]:
    """COCO mAP@[.5:.95] and mAP@0.5 of per-image (boxes xyxy, labels 0..C-1, scores) against the
    records' boxes (ground truth)."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for index, (item, (boxes, labels, scores)) in enumerate(zip(items, detections, strict=True)):
        width, height = item.width, item.height
        if width is None or height is None:
            _, height, width = load_image(item.path).shape
        images.append({"id": index + 1, "width": width, "height": height})
        for box in item.boxes:
            x1, y1, x2, y2 = box.bbox
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": box.label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
        for found, label, score in zip(boxes, labels, scores, strict=True):
            x1, y1, x2, y2 = found
            results.append(
                {
                    "image_id": index + 1,
                    "category_id": label + 1,
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                }
            )
    if not annotations:
        raise ValueError("the test set has no ground-truth boxes")
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if not results:
            present = {a["category_id"] - 1 for a in annotations}
            zeros = [0.0 if k in present else None for k in range(num_classes)]
            return {"map": 0.0, "map50": 0.0, "map75": 0.0, "map_per_class": zeros, "map50_per_class": zeros}
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = [max(0.0, float(v)) for v in evaluator.stats]
    out: dict[str, Any] = {"map": stats[0], "map50": stats[1], "map75": stats[2]}
    out["map_per_class"] = _ap_per_class(evaluator, num_classes, iou=None)
    out["map50_per_class"] = _ap_per_class(evaluator, num_classes, iou=0)
    return out


def _ap_per_class(evaluator: COCOeval, num_classes: int, *, iou: int | None) -> list[float | None]:
    """AP of each class (index 0..C-1) from pycocotools' precision array [T, R, K, A, M], all areas, the
    most detections, as its summarize() averages it: over IoU 0.5:0.95 (``iou=None``) or at one threshold
    (``iou=0``: 0.5); None for a class with no ground truth in the test set."""
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    if iou is not None:
        precision = precision[iou : iou + 1]
    out: list[float | None] = []
    for k in range(num_classes):
        values = precision[:, :, k]
        values = values[values > -1]
        out.append(float(values.mean()) if values.size else None)
    return out


def evaluate(
    detector: Detector,
    items: list[TrainingImage],
    *,
    batch_size: int = 4,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    detections = predict(
        detector,
        [item.path for item in items],
        EVAL_THRESHOLD,
        batch_size=batch_size,
        device=device,
        progress=progress,
    )
    as_lists = [(d.boxes.tolist(), d.labels.tolist(), d.scores.tolist()) for d in detections]
    out = coco_map(items, as_lists, detector.num_classes)
    out["test_images"] = len(items)
    out["test_boxes"] = int(np.sum([len(item.boxes) for item in items]))
    return out
