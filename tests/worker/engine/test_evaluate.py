"""Per-class AP from pycocotools' own arrays: classes with known answers, and their mean is its mAP."""

from __future__ import annotations

import pytest

from app.rounds.training_set import TargetBox, TrainingImage
from worker.engine.evaluate import coco_map


def test_per_class_ap_has_known_answers_and_averages_to_pycocotools_map() -> None:
    items = [
        TrainingImage(
            "a.png", [TargetBox([0, 0, 10, 10], 0), TargetBox([20, 20, 40, 40], 1)], width=64, height=64
        ),
        TrainingImage(
            "b.png", [TargetBox([5, 5, 25, 30], 0), TargetBox([40, 0, 60, 20], 1)], width=64, height=64
        ),
    ]
    detections = [
        (
            [[0, 0, 10, 10], [0, 40, 10, 50], [21, 21, 41, 39]],
            [0, 1, 1],
            [0.9, 0.8, 0.7],
        ),  # class 1: a miss first
        ([[5, 5, 25, 30], [0, 0, 5, 5]], [0, 1], [0.9, 0.3]),  # class 1 found nowhere here
    ]
    metrics = coco_map(items, detections, num_classes=3)
    ap, ap50 = metrics["map_per_class"], metrics["map50_per_class"]
    assert ap[0] == pytest.approx(1.0) and ap50[0] == pytest.approx(1.0)  # class 0: found exactly, first
    assert 0 < ap50[1] < 1  # class 1: one of two found, after a false positive
    assert ap[2] is None and ap50[2] is None  # class 2: no ground truth
    assert (ap[0] + ap[1]) / 2 == pytest.approx(metrics["map"], abs=1e-9)
    assert (ap50[0] + ap50[1]) / 2 == pytest.approx(metrics["map50"], abs=1e-9)


def test_no_detections_score_zero_for_classes_with_truth_only() -> None:
    items = [TrainingImage("a.png", [TargetBox([0, 0, 10, 10], 1)], width=64, height=64)]
    metrics = coco_map(items, [([], [], [])], num_classes=2)
    assert metrics["map50_per_class"] == [None, 0.0] and metrics["map_per_class"] == [None, 0.0]
