"""The engine learns: a bar that no untrained model reaches, met after about a minute of CPU training.

Bar: mAP@0.5 >= 0.08 on its own 48 training images (pycocotools). Untrained, the same model scores
about 1e-4 (boxes and classes at chance: ten classes, scenes of 1 to 15 digits among clutter); eight
epochs at the lite preset's batch 2 and lr 0.01 (about 65 s here) reached 0.20. A model that learned
nothing cannot pass; one that learns as it should passes with a margin of more than 2x.
"""

from __future__ import annotations

import pytest
import torch

from worker.engine.config import TrainConfig
from worker.engine.data import coco_items
from worker.engine.detector import build_detector
from worker.engine.evaluate import evaluate
from worker.engine.presets import get_preset
from worker.engine.train import train

BAR = 0.08


@pytest.mark.slow
def test_lite_faster_rcnn_learns_digit_scenes(digit_scenes) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    torch.manual_seed(0)
    detector = build_detector(
        get_preset("faster_rcnn_r18_fpn_lite"), 10, weights="none", min_size=128, max_size=128
    )
    untrained = evaluate(detector, items)["map50"]
    train(
        detector, items, TrainConfig(epochs=8, lr=0.01, batch_size=2, lr_steps=(6,), warmup_iters=50, seed=0)
    )
    trained = evaluate(detector, items)["map50"]
    print(f"mAP@0.5 on training images: untrained {untrained:.4f}, trained {trained:.4f}")
    assert untrained < BAR / 10
    assert trained >= BAR
