"""The model's detections on augmented views of an image, matched back to given boxes: the measurements
behind the consistency strategy (worker/acquisition/consistency.py; Lyu et al., CVPR 2023).

Views: the image flipped left-right, and the image seen at RESCALE times the model's input size (its
own resize made smaller, so the network sees other pixels per object). Each view's detections are mapped
back to original pixels; every candidate box takes the view detection that overlaps it most as its
counterpart. Per box and view: classification disagreement = total variation between the two class
distributions (background included), localisation spread = 1 - their IoU; no counterpart at all: 1, 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from worker.acquisition.strategies import distribution
from worker.engine.detector import Detections, Detector

VIEWS = ("hflip", "rescale")
RESCALE = 0.75


@contextlib.contextmanager
def _input_scale(detector: Detector, factor: float, image: Tensor) -> Iterator[tuple[Tensor, float]]:
    """The image as a rescaled view, and the factor from view pixels back to original ones. A detector
    that resizes its input itself (torchvision's transform) is told a smaller size; any other gets a
    smaller image."""
    transform = getattr(detector.model, "transform", None)
    if transform is not None and hasattr(transform, "min_size"):
        sizes = transform.min_size, transform.max_size
        transform.min_size = tuple(max(1, round(s * factor)) for s in sizes[0])
        transform.max_size = max(1, round(sizes[1] * factor))
        try:
            yield image, 1.0  # the detector maps its boxes back to the image it was given
        finally:
            transform.min_size, transform.max_size = sizes
        return
    smaller = F.interpolate(image[None], scale_factor=factor, mode="bilinear", align_corners=False)[0]
    yield smaller, 1.0 / factor


def _view(detector: Detector, image: Tensor, view: str, t_d: float) -> Detections:
    """The detector's detections on one view of ``image`` (3, H, W), boxes in original pixels."""
    width = image.shape[-1]
    if view == "hflip":
        found = detector.detect([image.flip(-1)], t_d)[0]
        boxes = found.boxes.clone()
        boxes[:, 0], boxes[:, 2] = width - found.boxes[:, 2], width - found.boxes[:, 0]
        return Detections(boxes, found.labels, found.scores, found.probs, None, found.image_feature)
    if view == "rescale":
        with _input_scale(detector, RESCALE, image) as (seen, back):
            found = detector.detect([seen], t_d)[0]
        return Detections(
            found.boxes * back, found.labels, found.scores, found.probs, None, found.image_feature
        )
    raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")


def disagreement(view: Detections, boxes: Tensor, probs: Tensor) -> np.ndarray:
    """(N, 2) [classification, localisation] of candidate ``boxes`` (N, 4) with class ``probs`` (N, C)
    against one view's detections (original pixels)."""
    n = boxes.shape[0]
    out = np.ones((n, 2), dtype=np.float64)  # no counterpart: full disagreement
    if n == 0 or view.boxes.numel() == 0:
        return out
    overlap = box_iou(boxes.float(), view.boxes.float())  # (N, M)
    best, index = overlap.max(dim=1)
    found = best > 0
    mine = distribution(probs.numpy())
    theirs = distribution(view.probs[index].numpy())
    variation = 0.5 * np.abs(mine - theirs).sum(axis=1)
    out[found.numpy(), 0] = variation[found.numpy()]
    out[found.numpy(), 1] = (1.0 - best[found]).numpy()
    return out


def view_terms(detector: Detector, image: Tensor, boxes: Tensor, probs: Tensor, t_d: float) -> np.ndarray:
    """(N, 2) consistency terms of candidate ``boxes`` (N, 4) original pixels, with the model's class
    ``probs`` (N, C) for them, on ``image`` (3, H, W): each term averaged over VIEWS."""
    device = next(detector.model.parameters()).device
    with torch.no_grad():
        views = [_cpu(_view(detector, image.to(device), view, t_d)) for view in VIEWS]
    return np.mean([disagreement(v, boxes.cpu(), probs.cpu()) for v in views], axis=0)


def _cpu(found: Detections) -> Detections:
    boxes, labels, scores, probs = (t.cpu() for t in (found.boxes, found.labels, found.scores, found.probs))
    return Detections(boxes, labels, scores, probs, None, found.image_feature)
