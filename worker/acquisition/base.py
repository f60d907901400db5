"""What every acquisition strategy is: a score per box from the model's outputs, higher = more
informative; an explicit reduction of box scores to image scores; ranking is its own step (ranking.py).

numpy only (no torch): the API imports the registry to validate strategy names.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from worker.acquisition import ranking

Reduction = Literal["mean", "max", "sum"]


@dataclass(frozen=True)
class BoxBatch:
    """Pool boxes under one model, one row per box, each row named by the box's database id.

    box_ids: (N,) int64. image_ids: (N,) int64, the image each box lies on. probs: (N, C) float, the
    box's class probabilities (Faster R-CNN: softmax over C classes and background, background column
    dropped; RetinaNet: per-class sigmoids), or None when the model gave none. features: (N, D) float
    box-head (FC2) features, or None (RetinaNet has none).
    """

    box_ids: np.ndarray
    image_ids: np.ndarray
    probs: np.ndarray | None = None
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.box_ids)
        for name in ("image_ids", "probs", "features"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"BoxBatch.{name} has {len(value)} rows for {n} boxes")

    def __len__(self) -> int:
        return len(self.box_ids)


@dataclass(frozen=True)
class Params:
    """What a strategy is built with, from the project's settings and the round."""

    seed: int = 0
    salt: int = 0  # the round number: random scores differ from round to round
    reduction: Reduction = "mean"
    budget: int = 100  # queries the round asks for (core-set picks that many greedily)


class Strategy(ABC):
    """An informativeness measure. Subclasses set ``name`` and ``description`` and override
    ``score_boxes`` (scored box by box, in any shard) or, with ``whole_pool``, ``score_pool``."""

    name: ClassVar[str]
    description: ClassVar[str]
    #: scores depend on the whole pool at once (core-set): computed at ranking from every shard's features
    whole_pool: ClassVar[bool] = False
    #: at the box unit it needs box features, which RetinaNet does not have
    needs_box_features: ClassVar[bool] = False
    #: it needs the model's detections on augmented views of each image (box unit; consistency.py)
    needs_views: ClassVar[bool] = False

    def __init__(self, params: Params) -> None:
        self.params = params

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        """(N,) float: the informativeness of each box."""
        raise ValueError(f"{self.name} scores the pool as a whole: use score_pool()")

    def score_images(self, image_ids: np.ndarray, boxes: BoxBatch) -> np.ndarray:
        """(M,) float for the given pool images: their boxes' scores reduced (``params.reduction``);
        an image without boxes scores 0."""
        position = {int(image_id): i for i, image_id in enumerate(image_ids)}
        index = np.asarray([position[int(i)] for i in boxes.image_ids], dtype=np.int64)
        return ranking.reduce(self.score_boxes(boxes), index, len(image_ids), self.params.reduction)

    def score_pool(self, pool: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """(N,) float for pool items (N, D) given already labeled ones (M, D); whole-pool strategies."""
        raise ValueError(f"{self.name} scores box by box: use score_boxes()")


def needs_probs(strategy: Strategy, boxes: BoxBatch) -> np.ndarray:
    if boxes.probs is None:
        raise ValueError(f"strategy {strategy.name} needs class probabilities")
    return boxes.probs
