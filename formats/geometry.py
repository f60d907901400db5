"""Checks that decide whether a parsed box is usable; importers skip the rest with this reason."""

from __future__ import annotations

import math


def box_defect(bbox: list[float], width: int | None, height: int | None) -> str | None:
    """Why ``bbox`` (xyxy, pixels) cannot be used on a ``width`` x ``height`` image, or None if it can."""
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in bbox):
        return "coordinates are not finite numbers"
    x1, y1, x2, y2 = bbox
    if x2 <= x1 or y2 <= y1:
        return f"zero or negative size ({x2 - x1:g} x {y2 - y1:g})"
    outside = width is not None and height is not None and (x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height)
    if outside:
        return f"entirely outside the {width}x{height} image"
    return None


MIN_BOX_PX = 2.0  # the labels API refuses a box narrower or lower: a slip of the mouse, not an object


def drawable(bbox: list[float], width: int | None = None, height: int | None = None) -> list[float]:
    """``bbox`` as an annotator can draw it: a side under MIN_BOX_PX grown about its centre to that size,
    shifted back inside a ``width`` x ``height`` image where growing took it out (a tiny object gets the
    smallest box the API takes)."""
    out = list(bbox)
    for lo, hi, limit in ((0, 2, width), (1, 3, height)):
        if out[hi] - out[lo] >= MIN_BOX_PX:
            continue
        start = (out[lo] + out[hi] - MIN_BOX_PX) / 2
        if limit is not None:
            start = min(start, limit - MIN_BOX_PX)
        start = max(start, 0.0)
        out[lo], out[hi] = start, start + MIN_BOX_PX
    return out


def clip_box(bbox: list[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = bbox
    return [
        min(max(x1, 0.0), width),
        min(max(y1, 0.0), height),
        min(max(x2, 0.0), width),
        min(max(y2, 0.0), height),
    ]


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two xyxy boxes (0 when the union is empty)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
