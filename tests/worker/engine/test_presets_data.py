from __future__ import annotations

import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from app.rounds.training_set import TargetBox, TrainingImage
from formats.coco import load_coco
from oracle import digits
from tests.conftest import BCCD
from worker.engine.data import DetectionDataset, coco_items, target_tensors, voc_items
from worker.engine.detector import build_detector
from worker.engine.presets import PRESETS, get_preset
from worker.engine.weights import WeightsUnavailable


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_builds_from_scratch_and_trains_a_step(name: str) -> None:
    detector = build_detector(get_preset(name), 2, weights="none", min_size=96, max_size=96)
    detector.model.train()
    target = target_tensors(TrainingImage("x", [TargetBox([10.0, 10, 50, 60], 1)]))
    losses = detector.losses([torch.rand(3, 96, 96)], [target])
    assert all(torch.isfinite(v) for v in losses.values())


def test_paper_presets_offline_fail_naming_the_from_scratch_setting(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached

    def no_network(*args, **kwargs):  # the internet is outside this machine
        raise urllib.error.URLError("no route to download.pytorch.org")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    for name in ("faster_rcnn_r50_fpn", "retinanet_r50_fpn"):
        with pytest.raises(WeightsUnavailable, match="pretrained=false"):
            build_detector(get_preset(name), 3, weights="imagenet")


def test_unknown_preset_names_the_choices() -> None:
    with pytest.raises(ValueError, match="faster_rcnn_r18_fpn_lite"):
        get_preset("yolov8")


def test_readers_share_the_service_parsers_on_bccd_and_coco(digit_scenes) -> None:
    items = voc_items(BCCD, ["RBC", "WBC", "Platelets"], "trainval")
    assert len(items) == 292
    assert all(len(i.boxes) == len(i.labeled) for i in items)  # every box a label, none noisy
    assert sum(len(i.boxes) for i in items) == sum(
        1 for i in items for _ in i.boxes
    )  # zero-size boxes are not among them
    assert all(b.bbox[2] > b.bbox[0] and b.bbox[3] > b.bbox[1] for i in items for b in i.boxes)
    classes, coco = coco_items(digit_scenes.train_json, digit_scenes.images)
    assert classes == digits.CLASSES and len(coco) == 48
    image, target = DetectionDataset(coco[:1])[0]
    assert image.shape == (3, 128, 128) and image.min() >= 0 and image.max() <= 1
    assert target["boxes"].shape[1] == 4 and target["noisy"].dtype == torch.bool


def test_digit_scenes_are_seeded_varied_and_split_by_digit_sample(digit_scenes, tmp_path: Path) -> None:
    train = load_coco(digit_scenes.train_json)
    per_image = np.bincount([a.image_id for a in train.annotations], minlength=len(train.images) + 1)[1:]
    assert per_image.min() >= 1 and per_image.max() <= 15 and per_image.max() > 5
    sides = [a.bbox[3] - a.bbox[1] for a in train.annotations]
    assert min(sides) < 20 < max(sides)  # varied scales
    again = digits.generate(tmp_path, train_images=48, test_images=16, size=128, seed=0)
    assert again.train_json.read_text() == digit_scenes.train_json.read_text()
    (train_digits, _), (test_digits, _) = digits._digits(0)
    train_set = {d.tobytes() for d in train_digits}
    assert not any(d.tobytes() in train_set for d in test_digits)  # no digit sample in both splits
