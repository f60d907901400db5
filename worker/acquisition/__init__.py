"""Acquisition: how informative each pool box (or image) is, by strategies built by name.

    strategy = build(settings.strategy, Params(seed, salt=round, reduction, budget))
    strategy.score_boxes(BoxBatch(...))      # per box, any shard: random, uncertainties
    strategy.score_images(image_ids, batch)  # the image unit: box scores reduced per image
    strategy.score_pool(pool, centres)       # whole-pool strategies (core-set, consistency), at ranking

numpy only: the API imports this registry to validate a project's strategy.
"""

from worker.acquisition import consistency, strategies  # noqa: F401  (their classes register themselves)
from worker.acquisition.base import BoxBatch, Params, Reduction, Strategy
from worker.acquisition.ranking import hashed_uniform, rank, reduce
from worker.acquisition.registry import REGISTRY, build, names

__all__ = [
    "REGISTRY",
    "BoxBatch",
    "Params",
    "Reduction",
    "Strategy",
    "build",
    "hashed_uniform",
    "names",
    "rank",
    "reduce",
]
