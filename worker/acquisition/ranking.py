"""Reductions from box scores to image scores, ranking, and seeded per-id randomness."""

from __future__ import annotations

from typing import Literal

import numpy as np


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


def reduce(
    box_scores: np.ndarray, image_index: np.ndarray, num_images: int, how: Literal["mean", "max", "sum"]
) -> np.ndarray:
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
