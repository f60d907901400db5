"""Where a curve reaches a level: the first touch, the sustained crossing, the value at a cost."""

from __future__ import annotations

import math

import numpy as np

from oracle.levels import first_touch, sustained, value_at


def test_first_touch_interpolates_between_rounds() -> None:
    curve = np.array([[100.0, 0.2], [200.0, 0.4], [300.0, 0.5]])
    assert first_touch(curve, 0.3) == 150.0
    assert first_touch(curve, 0.1) == 100.0
    assert first_touch(curve, 0.5) == 300.0
    assert math.isnan(first_touch(curve, 0.6))


def test_a_level_counts_from_where_the_curve_stays_above_it() -> None:
    """The case the issue names: a curve that touches 0.658 and falls back to 0.657 has not reached it."""
    curve = np.array([[100.0, 0.60], [200.0, 0.66], [300.0, 0.657], [400.0, 0.70]])
    assert first_touch(curve, 0.658) == 100.0 + (0.058 / 0.06) * 100
    assert sustained(curve, 0.658) == 300.0 + (0.001 / 0.043) * 100  # after the fall
    assert sustained(curve, 0.5) == 100.0  # above it from the start
    assert math.isnan(sustained(np.array([[100.0, 0.7], [200.0, 0.6]]), 0.65))  # ends below it
    assert sustained(curve, 0.70) == 400.0


def test_value_at_a_cost_is_only_read_inside_the_run() -> None:
    curve = np.array([[100.0, 0.2], [300.0, 0.6]])
    assert value_at(curve, 200.0) == 0.4
    assert math.isnan(value_at(curve, 50.0)) and math.isnan(value_at(curve, 301.0))
