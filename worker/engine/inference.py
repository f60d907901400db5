"""Batched inference over images on disk: pool predictions, re-scoring of fixed boxes, in eval mode."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from worker.engine.data import load_image
from worker.engine.detector import Detections, Detector, Rescored
from worker.engine.train import pick_device


def _batches(paths: Sequence[str], batch_size: int) -> Iterator[tuple[int, list[torch.Tensor]]]:
    for start in range(0, len(paths), batch_size):
        yield start, [load_image(path) for path in paths[start : start + batch_size]]


def predict(
    detector: Detector,
    paths: Sequence[str],
    t_d: float,
    *,
    batch_size: int = 4,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> list[Detections]:
    """Detections with score >= t_d for each image, moved to the CPU."""
    dev = pick_device(device)
    detector.model.to(dev).eval()
    out: list[Detections] = []
    for _, images in _batches(paths, batch_size):
        for d in detector.detect([im.to(dev) for im in images], t_d):
            out.append(
                Detections(
                    d.boxes.cpu(),
                    d.labels.cpu(),
                    d.scores.cpu(),
                    d.probs.cpu(),
                    None if d.features is None else d.features.cpu(),
                    d.image_feature.cpu(),
                )
            )
        if progress:
            progress(len(out))
    return out


def rescore(
    detector: Detector,
    paths: Sequence[str],
    boxes: Sequence[torch.Tensor],
    *,
    batch_size: int = 4,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
) -> list[Rescored]:
    """Class probabilities (and box features) of given boxes, (N_i, 4) xyxy pixels per image."""
    dev = pick_device(device)
    detector.model.to(dev).eval()
    out: list[Rescored] = []
    for start, images in _batches(paths, batch_size):
        chunk = [b.to(dev, torch.float32).reshape(-1, 4) for b in boxes[start : start + len(images)]]
        for r in detector.rescore([im.to(dev) for im in images], chunk):
            out.append(
                Rescored(
                    r.probs.cpu(), None if r.features is None else r.features.cpu(), r.image_feature.cpu()
                )
            )
        if progress:
            progress(len(out))
    return out
