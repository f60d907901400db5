"""The strategies: random and the class-probability uncertainties score each box on its own;
core-set scores the pool as a whole.

Probability-based scores read a box's class vector ``probs`` (N, C) as a distribution over the C
classes plus background, the background taking whatever mass the classes leave (exact for Faster
R-CNN's softmax; RetinaNet's per-class sigmoids are renormalised when they sum over 1).
"""

from __future__ import annotations

import numpy as np

from worker.acquisition import ranking
from worker.acquisition.base import BoxBatch, Strategy, needs_probs
from worker.acquisition.coreset import coreset_scores
from worker.acquisition.registry import register


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


def least_confidence_with_background(probs: np.ndarray) -> np.ndarray:
    """1 - max over the classes and background: a box the model firmly calls background scores low."""
    return 1.0 - distribution(probs).max(axis=1)


def object_class_uncertainty(probs: np.ndarray) -> np.ndarray:
    """P(object) x (1 - max class probability given an object): how likely the box holds an object whose
    class the model is unsure of. Background-looking boxes score near 0, whatever their class spread."""
    q = distribution(probs)
    p_object = 1.0 - q[:, -1]
    given_object = q[:, :-1] / np.maximum(p_object, 1e-12)[:, None]
    return p_object * (1.0 - given_object.max(axis=1, initial=0.0))


def margin(probs: np.ndarray) -> np.ndarray:
    """1 - (top-1 - top-2) of the distribution: small margins are informative."""
    q = np.sort(distribution(probs), axis=1)
    return 1.0 - (q[:, -1] - q[:, -2])


@register
class Random(Strategy):
    name = "random"
    description = "uniform at random (seeded per box, new each round)"

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        return ranking.hashed_uniform(boxes.box_ids, self.params.seed, self.params.salt)

    def score_images(self, image_ids: np.ndarray, boxes: BoxBatch) -> np.ndarray:
        return ranking.hashed_uniform(image_ids, self.params.seed, self.params.salt)


@register
class LeastConfidence(Strategy):
    name = "least_confidence"
    description = "1 - max class probability (the paper's)"

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        return least_confidence(needs_probs(self, boxes))


@register
class LeastConfidenceWithBackground(Strategy):
    name = "least_confidence_bg"
    description = "1 - max probability over the classes and background: skips boxes firmly called background"

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        return least_confidence_with_background(needs_probs(self, boxes))


@register
class ObjectClassUncertainty(Strategy):
    name = "object_uncertainty"
    description = "P(object) x (1 - max class probability given an object): objects of an uncertain class"

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        return object_class_uncertainty(needs_probs(self, boxes))


@register
class Entropy(Strategy):
    name = "entropy"
    description = "entropy of the class distribution (background included)"

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        return entropy(needs_probs(self, boxes))


@register
class Margin(Strategy):
    name = "margin"
    description = "1 - (top1 - top2) of the class distribution (background included)"

    def score_boxes(self, boxes: BoxBatch) -> np.ndarray:
        return margin(needs_probs(self, boxes))


@register
class Coreset(Strategy):
    name = "coreset"
    description = "k-center greedy on features (FC2 per box, pooled backbone per image), labeled as centres"
    whole_pool = True
    needs_box_features = True

    def score_pool(self, pool: np.ndarray, centres: np.ndarray) -> np.ndarray:
        return coreset_scores(pool, centres, self.params.budget)
