"""Fresher noisy targets on hand-made detections: what is dropped, kept once, or ignored."""

from __future__ import annotations

import torch

from app.rounds.training_set import TargetBox, TrainingImage
from worker.engine.detector import Detections
from worker.engine.refresh import refresh


def _detections(rows: list[tuple[list[float], int, float]]) -> Detections:
    return Detections(
        boxes=torch.tensor([r[0] for r in rows]),
        labels=torch.tensor([r[1] for r in rows]),
        scores=torch.tensor([r[2] for r in rows]),
        probs=torch.zeros(len(rows), 3),
        features=None,
        image_feature=torch.zeros(4),
    )


def test_refresh_drops_what_is_answered_keeps_one_class_per_object_and_ignores_the_uncertain() -> None:
    record = TrainingImage(
        "x.png",
        [
            TargetBox([0.0, 0, 10, 10], 0, box_id=1),  # answered: a label
            TargetBox([80.0, 0, 90, 10], 2, noisy=True, weight=0.5, box_id=2),  # the first model's guess
        ],
        negatives=[[40.0, 0, 50, 10]],  # answered: background
    )
    found = _detections(
        [
            ([1.0, 0, 10, 10], 1, 0.9),  # on the label: dropped
            ([40.0, 1, 50, 10], 0, 0.95),  # on the negative: dropped
            ([20.0, 0, 30, 10], 1, 0.8),  # an object
            ([21.0, 0, 31, 10], 2, 0.6),  # its wrong-class twin: suppressed
            ([60.0, 0, 70, 10], 0, 0.2),  # uncertain: an ignore region
            ([100.0, 0, 110, 10], 1, 0.01),  # below t_d
        ]
    )
    fresh = refresh(record, found, t_d=0.05, confidence=0.5, lambda_d=0.5)
    assert [(b.bbox, b.label, b.noisy, b.weight) for b in fresh.boxes] == [
        ([0.0, 0, 10, 10], 0, False, 1.0),
        ([20.0, 0, 30, 10], 1, True, 0.5),
    ]
    assert fresh.ignore == [[60.0, 0, 70, 10]]
    assert fresh.negatives == record.negatives
    # with nothing found, the noisy targets go and the labels stay
    empty = refresh(record, _detections([]), t_d=0.05, confidence=0.5, lambda_d=0.5)
    assert [b.box_id for b in empty.boxes] == [1] and empty.ignore == []


def test_pseudo_labels_are_the_confident_predictions_off_every_answer_and_the_rest_is_unknown() -> None:
    """noisy_targets pseudo: at or above the confidence (0.9) and overlapping no answer at IoU 0.4 a
    prediction trains as a target; one on an answer does not; the uncertain ones are neither targets nor
    ignore regions (the unknown background decides what they train as)."""
    record = TrainingImage("x.png", [TargetBox([0.0, 0, 10, 10], 0, box_id=1)], negatives=[[40.0, 0, 50, 10]])
    found = _detections(
        [
            ([20.0, 0, 30, 10], 1, 0.93),  # confident, nobody answered there: a pseudo-label
            ([2.0, 0, 12, 10], 2, 0.97),  # confident, but on the label (IoU 0.67): dropped
            ([43.0, 0, 53, 10], 0, 0.95),  # confident, on the background answer (IoU 0.54): dropped
            ([60.0, 0, 70, 10], 0, 0.6),  # not confident enough: unknown
        ]
    )
    fresh = refresh(record, found, t_d=0.05, confidence=0.9, lambda_d=1.0, uncertain="unknown")
    assert [(b.bbox, b.label, b.noisy, b.weight) for b in fresh.boxes] == [
        ([0.0, 0, 10, 10], 0, False, 1.0),
        ([20.0, 0, 30, 10], 1, True, 1.0),
    ]
    assert fresh.ignore == [] and fresh.negatives == record.negatives
