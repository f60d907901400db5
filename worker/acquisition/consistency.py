"""Consistency (after Lyu et al., CVPR 2023, ComPAS): a box is informative where the model's detections on
augmented views of its image disagree with it, a committee of inputs rather than of models.

The detection engine measures, for every candidate box and every view (worker/engine/views.py), its
classification disagreement (total variation between its class distribution and its counterpart's in
the view) and its localisation spread (1 - IoU with that counterpart, mapped back to the original
pixels; a box the view does not find at all disagrees fully: 1 and 1), each averaged over the views.
Those two terms reach the ranking stage as a (N, 2) array per pool; there each is normalised over the
whole pool (divided by its largest value, or by MIN_SCALE where that is smaller: disagreement that small
is the views' rounding, not the model's doubt, and is not blown up to 1) and the two are averaged.
numpy only.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from worker.acquisition.base import Strategy
from worker.acquisition.registry import register

TERMS = ("classification", "localisation")
MIN_SCALE = 0.05


def normalised_disagreement(terms: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1] from (N, 2) raw terms: each column over the pool by its maximum (at least
    MIN_SCALE), then their mean."""
    terms = np.asarray(terms, dtype=np.float64)
    if terms.size == 0:  # no candidate in the whole pool (a query band nothing reached): nothing to rank
        return np.zeros(len(terms))
    if terms.ndim != 2 or terms.shape[1] != len(TERMS):
        raise ValueError(f"consistency terms must be (N, {len(TERMS)}), got shape {terms.shape}")
    if len(terms) == 0:
        return np.zeros(0)
    scaled = terms / np.maximum(terms.max(axis=0), MIN_SCALE)
    return scaled.mean(axis=1)


@register
class Consistency(Strategy):
    name = "consistency"
    description = (
        "disagreement between the model's detections on the image and on its horizontally flipped and "
        "rescaled views (classification and localisation, each normalised over the pool; Lyu et al. 2023); "
        "box unit, torchvision backend"
    )
    whole_pool = True  # normalised over the pool: scored at ranking
    needs_views: ClassVar[bool] = True

    def score_pool(self, pool: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """pool: (N, 2) raw terms of the pool's candidate boxes (``TERMS``); centres: unused."""
        return normalised_disagreement(pool)
