"""Negatives and ignore regions go through the model's own resize (and the dataset's flip) with the image, on
every torchvision preset: they cover the pixels they were drawn on, and anchors there are matched as they
should be (worker/engine/regions.py's RegionTransform and scale_regions)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from worker.engine.data import hflip_target
from worker.engine.detector import build_detector
from worker.engine.presets import PRESETS
from worker.engine.regions import BACKGROUND, IGNORED, match

TORCHVISION_PRESETS = sorted(PRESETS)
# each region painted in its own colour on a black image, in fractions of the image's width and height
PAINT = {
    "boxes": ([0.10, 0.10, 0.30, 0.40], (0.0, 0.0, 1.0)),  # a labeled object
    "negatives": ([0.55, 0.10, 0.75, 0.35], (1.0, 0.0, 0.0)),  # answered background, no object there
    "ignore": ([0.10, 0.60, 0.30, 0.90], (0.0, 1.0, 0.0)),  # neither object nor background
}


def _scene(width: int, height: int) -> tuple[Tensor, dict[str, Tensor]]:
    image = torch.zeros(3, height, width)
    target: dict[str, Tensor] = {}
    for key, (fractions, colour) in PAINT.items():
        box = torch.tensor(fractions) * torch.tensor([width, height, width, height], dtype=torch.float32)
        box = box.round()
        x1, y1, x2, y2 = (int(v) for v in box)
        image[:, y1:y2, x1:x2] = torch.tensor(colour).view(3, 1, 1)
        target[key] = box.view(1, 4)
    # a noisy prediction overlapping the negative (a queried box's neighbour), and the label tensors
    noisy = target["negatives"] + torch.tensor([[0.01 * width, 0.02 * height, 0.01 * width, 0.02 * height]])
    target["boxes"] = torch.cat([target["boxes"], noisy])
    target["labels"] = torch.tensor([0, 1])
    target["weights"] = torch.tensor([1.0, 0.5])
    target["noisy"] = torch.tensor([False, True])
    return image, target


def _painted(image: Tensor, colour: tuple[float, float, float]) -> Tensor:
    """The bounding box (1, 4) xyxy of the pixels of ``colour`` in ``image`` (3, H, W)."""
    want = torch.tensor(colour).view(3, 1, 1)
    mask = ((image - want).abs() < 0.35).all(dim=0)
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)


def _transformed(name: str, flip: bool) -> tuple[object, Tensor, dict[str, Tensor]]:
    preset = PRESETS[name]
    torch.manual_seed(0)
    detector = build_detector(preset, 2, weights="none")
    model = detector.model.train()
    width, height = 2 * preset.max_size, 2 * preset.min_size  # at least twice the model's size both ways
    image, target = _scene(width, height)
    if flip:  # what the training dataset does to an image and its target (data.DetectionDataset)
        image, target = image.flip(-1), hflip_target(target, width)
    images, targets = model.transform([image], [target])
    mean = torch.tensor(model.transform.image_mean).view(3, 1, 1)
    std = torch.tensor(model.transform.image_std).view(3, 1, 1)
    height_in, width_in = images.image_sizes[0]
    seen = images.tensors[0, :, :height_in, :width_in] * std + mean  # the model's input, unnormalised
    assert max(height_in, width_in) <= preset.max_size and height_in < height / 1.9
    return model, seen, targets[0]


@pytest.mark.parametrize("flip", [False, True], ids=["as-is", "flipped"])
@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_regions_cover_the_pixels_they_were_drawn_on_after_the_models_resize(name: str, flip: bool) -> None:
    _, seen, target = _transformed(name, flip)
    for key, (_, colour) in PAINT.items():
        drawn = _painted(seen, colour)
        region = target[key][:1]
        assert torch.allclose(region, drawn, atol=2.0), (key, region.tolist(), drawn.tolist())


@pytest.mark.parametrize("name", TORCHVISION_PRESETS)
def test_an_anchor_in_a_resized_negative_is_background_and_one_in_a_resized_ignore_region_is_ignored(
    name: str,
) -> None:
    model, seen, target = _transformed(name, flip=False)
    matcher = model.rpn.proposal_matcher if hasattr(model, "rpn") else model.proposal_matcher
    anchors = torch.cat(  # where the content is in the model's input
        [
            target["boxes"][1:2],  # exactly on the noisy box: its own
            _painted(seen, PAINT["negatives"][1]),  # on the area answered background, near the noisy box
            _painted(seen, PAINT["ignore"][1]),  # on the ignore region: otherwise plain background
            _painted(seen, PAINT["boxes"][1]),  # on the labeled object
        ]
    )
    matched = match(matcher, anchors, target)
    assert matched.tolist() == [1, BACKGROUND, IGNORED, 0]
