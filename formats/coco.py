"""COCO JSON: instances (ground truth) and results with ``score`` (predictions)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from formats.errors import FormatError

MAX_PROBLEMS = 10


@dataclass(frozen=True)
class CocoImage:
    id: int | str
    file_name: str
    width: int | None
    height: int | None
    external_id: str | None = None  # boxal's own exports name the image as boxal knows it


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


class _Problems(list[str]):
    """The first MAX_PROBLEMS problems found."""

    def add(self, text: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append(text)


def parse_coco(data: Any, *, require_images: bool = True) -> CocoData:
    """Parse a COCO dict; raise FormatError listing the first problems if its structure is broken.

    Dangling references (an annotation naming an image or category the file does not define) are
    structural problems. Degenerate geometry is not: it is reported per box by the importer.
    """
    if not isinstance(data, dict):
        raise FormatError("COCO data must be a JSON object with images, categories and annotations")
    problems = _Problems()
    raw_images = data.get("images")
    if raw_images is None and require_images:
        problems.add("missing 'images'")
    images = _images(raw_images or [], problems)
    categories = _categories(data.get("categories"), problems)
    raw_annotations = data.get("annotations", [])
    if not isinstance(raw_annotations, list):
        problems.add("'annotations' must be a list")
        raw_annotations = []
    image_ids = None if raw_images is None else {image.id for image in images}
    annotations = [
        annotation
        for i, raw in enumerate(raw_annotations)
        if (annotation := _annotation(i, raw, image_ids, categories, problems)) is not None
    ]
    if problems:
        raise FormatError("the COCO data is inconsistent", problems)
    return CocoData(images=images, categories=categories, annotations=annotations)


def _images(raw_images: list[Any], problems: _Problems) -> list[CocoImage]:
    images = []
    for i, raw in enumerate(raw_images):
        if not isinstance(raw, dict) or "id" not in raw:
            problems.add(f"images[{i}] has no id")
            continue
        width, height = raw.get("width"), raw.get("height")
        if width is not None and (not _number(width) or width <= 0):
            problems.add(f"images[{i}] has an invalid width {width!r}")
            width = None
        if height is not None and (not _number(height) or height <= 0):
            problems.add(f"images[{i}] has an invalid height {height!r}")
            height = None
        file_name = str(raw.get("file_name") or raw["id"])
        external = raw.get("boxal_external_id")
        images.append(
            CocoImage(
                raw["id"],
                file_name,
                _int_or_none(width),
                _int_or_none(height),
                external if isinstance(external, str) and external else None,
            )
        )
    if len({image.id for image in images}) != len(images):
        problems.add("image ids are not unique")
    return images


def _categories(raw_categories: Any, problems: _Problems) -> dict[int | str, str]:
    categories: dict[int | str, str] = {}
    if not isinstance(raw_categories, list) or not raw_categories:
        problems.add("missing 'categories' (a list of {id, name})")
        return categories
    for i, raw in enumerate(raw_categories):
        if not isinstance(raw, dict) or "id" not in raw or not isinstance(raw.get("name"), str):
            problems.add(f"categories[{i}] needs an id and a name")
            continue
        categories[raw["id"]] = raw["name"]
    return categories


def _annotation(
    i: int,
    raw: Any,
    image_ids: set[int | str] | None,
    categories: dict[int | str, str],
    problems: _Problems,
) -> CocoAnnotation | None:
    """One annotation, or None (and a problem noted) when it is broken. ``image_ids`` None: the file
    defines no images (predictions name images of the project by id)."""
    where = f"annotations[{i}]"
    if not isinstance(raw, dict):
        problems.add(f"{where} is not an object")
        return None
    image_id, category_id, bbox = raw.get("image_id"), raw.get("category_id"), raw.get("bbox")
    if not isinstance(image_id, int | str) or isinstance(image_id, bool):
        problems.add(f"{where} has no image_id")
        return None
    if image_ids is not None and image_id not in image_ids:
        problems.add(f"{where} names image_id {image_id!r}, which is not in images")
        return None
    if category_id not in categories:
        problems.add(f"{where} names category_id {category_id!r}, which is not in categories")
        return None
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
        problems.add(f"{where} has no bbox of 4 numbers [x, y, w, h]")
        return None
    score, probs, informativeness = raw.get("score"), raw.get("probs"), raw.get("informativeness")
    if score is not None and (not _number(score) or not math.isfinite(score)):
        problems.add(f"{where} has a score that is not a number")
        return None
    if probs is not None and (not isinstance(probs, list) or not all(_number(p) for p in probs)):
        problems.add(f"{where} has probs that are not a list of numbers")
        return None
    if informativeness is not None and not _number(informativeness):
        problems.add(f"{where} has an informativeness that is not a number")
        return None
    x, y, w, h = (float(v) for v in bbox)
    return CocoAnnotation(
        index=i,
        image_id=image_id,
        category_id=category_id,
        bbox=[x, y, x + w, y + h],
        iscrowd=bool(raw.get("iscrowd", 0)),
        score=None if score is None else float(score),
        probs=probs,
        informativeness=None if informativeness is None else float(informativeness),
    )


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
