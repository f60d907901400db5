from __future__ import annotations

from pathlib import Path

import pytest
import torch

from worker.engine.config import TrainConfig
from worker.engine.data import coco_items
from worker.engine.detector import build_detector
from worker.engine.inference import predict, rescore
from worker.engine.presets import get_preset
from worker.engine.train import LAST, TrainingDiverged, load_checkpoint, train


def _detector(arch: str):
    torch.manual_seed(0)
    return build_detector(get_preset(f"{arch}_r18_fpn_lite"), 10, weights="none", min_size=128, max_size=128)


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_detect_matches_the_models_own_output_with_probabilities_and_features(
    arch: str, digit_scenes
) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    detector = _detector(arch)
    paths = [item.path for item in items[:3]]
    t_d = 0.06 if arch == "faster_rcnn" else 0.009  # an untrained RetinaNet scores near its 0.01 prior
    ours = predict(detector, paths, t_d=t_d)
    model = detector.model.eval()
    if arch == "faster_rcnn":
        model.roi_heads.score_thresh = t_d
    else:
        model.score_thresh = t_d
    from worker.engine.data import load_image

    with torch.no_grad():
        stock = model([load_image(p) for p in paths])
    for mine, theirs in zip(ours, stock, strict=True):
        offset = 1 if arch == "faster_rcnn" else 0
        assert mine.boxes.shape[0] == theirs["boxes"].shape[0] > 0
        assert torch.allclose(mine.boxes, theirs["boxes"], atol=1e-4)
        assert torch.allclose(mine.scores, theirs["scores"], atol=1e-6)
        assert torch.equal(mine.labels + offset, theirs["labels"])
        # the probability vector is the detection's own: its label's entry is its score
        assert torch.allclose(mine.probs[torch.arange(len(mine.labels)), mine.labels], mine.scores, atol=1e-6)
        assert mine.probs.shape == (len(mine.labels), 10)
        assert (mine.features is not None) == (arch == "faster_rcnn")
        if mine.features is not None:
            assert mine.features.shape == (len(mine.labels), 256)
        assert mine.image_feature.ndim == 1


def test_rescoring_fixed_boxes(digit_scenes) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    frcnn = _detector("faster_rcnn")
    boxes = [torch.tensor([b.bbox for b in items[0].boxes]), torch.zeros((0, 4))]
    out = rescore(frcnn, [items[0].path, items[1].path], boxes)
    assert out[0].probs.shape == (len(items[0].boxes), 10) and out[1].probs.shape == (0, 10)
    assert out[0].features.shape == (len(items[0].boxes), 256)
    assert torch.all(out[0].probs.sum(dim=1) <= 1 + 1e-6)

    retina = _detector("retinanet")
    (det,) = predict(retina, [items[0].path], t_d=0.05)
    again = rescore(retina, [items[0].path], [det.boxes[:5]])[0]
    # documented approach: a fixed box that is one of the model's detections gets that detection's scores
    assert torch.allclose(again.probs, det.probs[:5], atol=1e-5)


def test_checkpoints_resume_and_warm_start(digit_scenes, tmp_path: Path) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    items = items[:4]
    config = TrainConfig(epochs=2, lr=0.01, batch_size=2, lr_steps=(1,), warmup_iters=1, seed=0)
    detector = _detector("faster_rcnn")
    seen = []
    result = train(
        detector,
        items,
        config,
        checkpoint_dir=tmp_path / "run",
        progress=seen.append,
        extra={"model_version": "r1"},
    )
    assert result.epochs_run == 2 and [p.epoch for p in seen] == [1, 1, 2, 2]
    state = load_checkpoint(tmp_path / "run" / LAST)
    assert set(state) >= {"model", "optimizer", "scheduler", "config", "epoch", "model_version"}
    assert state["epoch"] == 2 and state["config"]["lr"] == 0.01
    # resuming a finished run trains nothing more
    resumed = train(_detector("faster_rcnn"), items, config, checkpoint_dir=tmp_path / "run")
    assert resumed.epochs_run == 0 and resumed.resumed_from_epoch == 2
    warm = _detector("faster_rcnn")
    train(
        warm,
        items,
        TrainConfig(epochs=1, lr=1e-9, batch_size=2, lr_steps=(), warmup_iters=1),
        warm_start=tmp_path / "run" / LAST,
    )
    reference = state["model"]["roi_heads.box_predictor.cls_score.weight"]
    assert torch.allclose(
        warm.model.state_dict()["roi_heads.box_predictor.cls_score.weight"], reference, atol=1e-5
    )


def test_a_diverging_loss_stops_with_a_clear_error(digit_scenes) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    detector = _detector("faster_rcnn")
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        train(
            detector,
            items[:4],
            TrainConfig(epochs=1, lr=1e6, batch_size=2, lr_steps=(), warmup_iters=0, clip_grad_norm=None),
        )


def test_training_is_reproducible_from_the_seed(digit_scenes) -> None:
    """Same data, same seed, fresh processes' worth of state: the same weights (the pipeline seeds before
    building the model, so its initial weights are reproducible too)."""
    from worker.engine.train import seed_everything

    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    config = TrainConfig(epochs=1, lr=0.01, batch_size=2, lr_steps=(), warmup_iters=2, seed=7)
    weights = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever the process did before
        seed_everything(config.seed)
        detector = build_detector(
            get_preset("faster_rcnn_r18_fpn_lite"), 10, weights="none", min_size=96, max_size=96
        )
        train(detector, items[:4], config)
        weights.append(detector.model.state_dict()["roi_heads.box_predictor.cls_score.weight"].clone())
    assert torch.equal(weights[0], weights[1])


def test_iterations_fix_the_optimizer_steps_whatever_the_data_size(digit_scenes, tmp_path: Path) -> None:
    """Equal compute per arm: the same number of steps on 4 or on 8 images; the decay scales with it."""
    from worker.engine.train import Schedule, lr_factor

    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    config = TrainConfig(epochs=12, lr=0.01, batch_size=2, lr_steps=(9,), warmup_iters=2, iterations=5)
    for count in (4, 8):
        seen = []
        result = train(_detector("faster_rcnn"), items[:count], config, progress=seen.append)
        assert result.steps == 5 and len(seen) == 5
        assert max(p.epoch for p in seen) == (3 if count == 4 else 2)  # the last pass is partial
    schedule = Schedule.of(config, per_epoch=2)
    assert schedule.total == 5 and schedule.decay_at == (4,) and schedule.warmup == 1
    assert lr_factor(3, schedule) == 1.0 and lr_factor(4, schedule) == pytest.approx(0.1)
    assert (
        Schedule.of(TrainConfig(epochs=3, lr=0.01, batch_size=2, lr_steps=(2,), warmup_iters=0), 4).total
        == 12
    )
