"""Where a learning curve reaches a level. A curve is an (n, 2) array of (cost, mAP) points, rounds in
order; between two rounds it is read as the straight line joining them.

- ``sustained``: the cost from which the curve stays at or above the level for the rest of the run: the
  crossing after the last round below it (the headline figure).
- ``first_touch``: the cost at which the curve first reaches the level, even if it falls back later (the
  figure earlier reports used, kept beside the other and labeled).
- ``value_at``: the curve's value at a cost (nan outside the costs the run covered).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def _between(x0: float, y0: float, x1: float, y1: float, level: float) -> float:
    return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)


def first_touch(curve: np.ndarray, level: float) -> float:
    """The first cost at which the curve reaches ``level`` (nan if it never does)."""
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if y0 >= level:
            return float(x0)
        if y1 >= level:
            return _between(x0, y0, x1, y1, level)
    return float(curve[-1][0]) if len(curve) and curve[-1][1] >= level else math.nan


def sustained(curve: np.ndarray, level: float) -> float:
    """The cost from which the curve is at or above ``level`` to the end of the run (nan if its last
    round is below the level)."""
    if not len(curve) or curve[-1][1] < level:
        return math.nan
    below = [i for i in range(len(curve)) if curve[i][1] < level]
    if not below:
        return float(curve[0][0])
    i = below[-1]
    (x0, y0), (x1, y1) = curve[i], curve[i + 1]
    return _between(x0, y0, x1, y1, level)


def value_at(curve: np.ndarray, x: float) -> float:
    """The curve's value at cost ``x`` (nan outside the run's costs)."""
    if not len(curve) or x < curve[0][0] or x > curve[-1][0]:
        return math.nan
    return float(np.interp(x, curve[:, 0], curve[:, 1]))
