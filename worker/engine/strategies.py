"""Informativeness strategies: scoring per box, reduction per image, ranking is its own step (rank()).

Every strategy returns higher = more informative. Probability-based strategies read each box's class
vector ``probs`` (N, C) as a distribution over the C classes plus background, the background taking
whatever mass the classes leave (exact for Faster R-CNN's softmax; for RetinaNet's per-class sigmoids
the vector is renormalised when it sums over 1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from worker.engine.coreset import k_center_greedy

Reduction = Literal["mean", "max", "sum"]


def distribution(probs: np.ndarray) -> np.ndarray:
    """(N, C) class probabilities -> (N, C + 1) distribution with background last."""
    probs = np.clip(np.asarray(probs, dtype=np.float64), 0.0, None)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {probs.shape}")
    total = probs.sum(axis=1, keepdims=True)
    background = np.clip(1.0 - total, 0.0, None)
    full = np.concatenate([probs, background], axis=1)
    return full / np.maximum(full.sum(axis=1, keepdims=True), 1e-12)


def least_confidence(probs: np.ndarray) -> np.ndarray:
    """1 - max class probability (the paper's classification uncertainty)."""
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1, initial=0.0)


def entropy(probs: np.ndarray) -> np.ndarray:
    q = distribution(probs)
    return -(q * np.log(np.clip(q, 1e-12, None))).sum(axis=1)


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2) of the distribution: small margins are informative."""
    q = np.sort(distribution(probs), axis=1)
    return 1.0 - (q[:, -1] - q[:, -2])


def hashed_uniform(ids: np.ndarray, seed: int, salt: int = 0) -> np.ndarray:
    """Uniform [0, 1) per id, independent of order and sharding (splitmix64 of seed, salt, id)."""
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point
        x = (
            np.asarray(ids, dtype=np.uint64)
            + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
            + np.uint64(salt) * np.uint64(0xBF58476D1CE4E5B9)
        )
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


PROB_STRATEGIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "least_confidence": least_confidence,
    "entropy": entropy,
    "margin": margin,
}


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    needs: Literal["nothing", "probs", "features"]
    description: str


STRATEGIES: dict[str, StrategyInfo] = {
    "random": StrategyInfo("random", "nothing", "uniform at random (seeded per box)"),
    "least_confidence": StrategyInfo("least_confidence", "probs", "1 - max class probability"),
    "entropy": StrategyInfo("entropy", "probs", "entropy of the class distribution"),
    "margin": StrategyInfo("margin", "probs", "1 - (top1 - top2) of the class distribution"),
    "coreset": StrategyInfo("coreset", "features", "k-center greedy on features, labeled boxes as centres"),
}


def score(
    name: str, *, ids: np.ndarray, probs: np.ndarray | None = None, seed: int = 0, salt: int = 0
) -> np.ndarray:
    """Per-item scores for the strategies that score items independently (all but coreset)."""
    if name == "random":
        return hashed_uniform(ids, seed, salt)
    if name in PROB_STRATEGIES:
        if probs is None:
            raise ValueError(f"strategy {name} needs class probabilities")
        return PROB_STRATEGIES[name](probs)
    if name == "coreset":
        raise ValueError("coreset scores the pool as a whole: use coreset_scores()")
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def coreset_scores(pool: np.ndarray, centres: np.ndarray, budget: int) -> np.ndarray:
    """Core-set informativeness: the first ``budget`` picks of k-center greedy score their distance at
    pick time (non-increasing), the rest their final distance to the nearest centre or pick. Ranking by
    this score serves the greedy order first."""
    order, picked_distance, final_distance = k_center_greedy(pool, centres, budget)
    scores = final_distance.astype(np.float64).copy()
    scores[order] = picked_distance
    # a picked point must stay above every unpicked one, including ties at the boundary
    if len(order) and len(order) < len(scores):
        unpicked = np.setdiff1d(np.arange(len(scores)), order)
        floor = scores[unpicked].max()
        scores[order] = np.maximum(scores[order], np.nextafter(floor, np.inf))
    return scores


def reduce(box_scores: np.ndarray, image_index: np.ndarray, num_images: int, how: Reduction) -> np.ndarray:
    """Image scores from box scores; ``image_index`` maps each box to 0..num_images-1. No boxes: 0."""
    box_scores = np.asarray(box_scores, dtype=np.float64)
    total = np.bincount(image_index, weights=box_scores, minlength=num_images)
    if how == "sum":
        return total
    if how == "mean":
        counts = np.bincount(image_index, minlength=num_images)
        return np.divide(total, counts, out=np.zeros(num_images), where=counts > 0)
    if how == "max":
        out = np.zeros(num_images)
        np.maximum.at(out, image_index, box_scores)
        return out
    raise ValueError(f"unknown reduction {how!r}; choose mean, max or sum")


def rank(ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Ids from most to least informative (ties: lower id first), as the lease queue serves them."""
    order = np.lexsort((np.asarray(ids), -np.asarray(scores)))
    return np.asarray(ids)[order]
