"""A Label Studio rectangle as its annotations carry it: percent of the image, from pixel corners."""

from __future__ import annotations

from typing import Any


def region(region_id: str, xyxy: list[float], label: str, width: int, height: int) -> dict[str, Any]:
    x1, y1, x2, y2 = xyxy
    return {
        "id": region_id,
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "value": {
            "x": 100 * x1 / width,
            "y": 100 * y1 / height,
            "width": 100 * (x2 - x1) / width,
            "height": 100 * (y2 - y1) / height,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }
