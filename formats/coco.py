"""COCO JSON: instances (ground truth) and results with ``score`` (predictions)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.formats.errors import FormatError

MAX_PROBLEMS = 10


@dataclass(frozen=True)
class CocoImage:
    id: int | str
    file_name: str
    width: int | None
    height: int | None


@dataclass(frozen=True)
class CocoAnnotation:
    index: int
    image_id: int | str
    category_id: int | str
    bbox: list[float]  # xyxy pixels
    iscrowd: bool = False
    score: float | None = None
    probs: list[float] | None = None
    informativeness: float | None = None


@dataclass
class CocoData:
    images: list[CocoImage]
    categories: dict[int | str, str]
    annotations: list[CocoAnnotation] = field(default_factory=list)

    def category_name(self, annotation: CocoAnnotation) -> str:
        return self.categories[annotation.category_id]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_coco(data: Any, *, require_images: bool = True) -> CocoData:
    """Parse a COCO dict; raise FormatError listing the first problems if its structure is broken.

    Dangling references (an annotation naming an image or category the file does not define) are
    structural problems. Degenerate geometry is not: it is reported per box by the importer.
    """
    if not isinstance(data, dict):
        raise FormatError("COCO data must be a JSON object with images, categories and annotations")
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < MAX_PROBLEMS:
            problems.append(text)

    images: list[CocoImage] = []
    raw_images = data.get("images")
    if raw_images is None and require_images:
        problem("missing 'images'")
    for i, raw in enumerate(raw_images or []):
        if not isinstance(raw, dict) or "id" not in raw:
            problem(f"images[{i}] has no id")
            continue
        width, height = raw.get("width"), raw.get("height")
        if width is not None and (not _number(width) or width <= 0):
            problem(f"images[{i}] has an invalid width {width!r}")
            width = None
        if height is not None and (not _number(height) or height <= 0):
            problem(f"images[{i}] has an invalid height {height!r}")
            height = None
        file_name = str(raw.get("file_name") or raw["id"])
        images.append(CocoImage(raw["id"], file_name, _int_or_none(width), _int_or_none(height)))
    image_ids = {image.id for image in images}
    if len(image_ids) != len(images):
        problem("image ids are not unique")

    categories: dict[int | str, str] = {}
    raw_categories = data.get("categories")
    if not isinstance(raw_categories, list) or not raw_categories:
        problem("missing 'categories' (a list of {id, name})")
    for i, raw in enumerate(raw_categories or []):
        if not isinstance(raw, dict) or "id" not in raw or not isinstance(raw.get("name"), str):
            problem(f"categories[{i}] needs an id and a name")
            continue
        categories[raw["id"]] = raw["name"]

    annotations: list[CocoAnnotation] = []
    raw_annotations = data.get("annotations", [])
    if not isinstance(raw_annotations, list):
        problem("'annotations' must be a list")
        raw_annotations = []
    for i, raw in enumerate(raw_annotations):
        if not isinstance(raw, dict):
            problem(f"annotations[{i}] is not an object")
            continue
        image_id, category_id, bbox = raw.get("image_id"), raw.get("category_id"), raw.get("bbox")
        if raw_images is not None and image_id not in image_ids:
            problem(f"annotations[{i}] names image_id {image_id!r}, which is not in images")
            continue
        if category_id not in categories:
            problem(f"annotations[{i}] names category_id {category_id!r}, which is not in categories")
            continue
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            problem(f"annotations[{i}] has no bbox of 4 numbers [x, y, w, h]")
            continue
        score = raw.get("score")
        if score is not None and (not _number(score) or not math.isfinite(score)):
            problem(f"annotations[{i}] has a score that is not a number")
            continue
        probs = raw.get("probs")
        if probs is not None and (not isinstance(probs, list) or not all(_number(p) for p in probs)):
            problem(f"annotations[{i}] has probs that are not a list of numbers")
            continue
        informativeness = raw.get("informativeness")
        if informativeness is not None and not _number(informativeness):
            problem(f"annotations[{i}] has an informativeness that is not a number")
            continue
        x, y, w, h = (float(v) for v in bbox)
        annotations.append(
            CocoAnnotation(
                index=i,
                image_id=image_id,
                category_id=category_id,
                bbox=[x, y, x + w, y + h],
                iscrowd=bool(raw.get("iscrowd", 0)),
                score=None if score is None else float(score),
                probs=probs,
                informativeness=None if informativeness is None else float(informativeness),
            )
        )
    if problems:
        raise FormatError("the COCO data is inconsistent", problems)
    return CocoData(images=images, categories=categories, annotations=annotations)


def load_coco(path: str | Path) -> CocoData:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path}: not readable as JSON ({exc})") from exc
    return parse_coco(data)


def to_xywh(bbox: list[float]) -> list[float]:
    x1, y1, x2, y2 = bbox
    return [x1, y1, x2 - x1, y2 - y1]


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)
