"""Ultralytics YOLO: ``data.yaml`` (class names), ``<subset>/images/*`` and ``<subset>/labels/<stem>.txt``.

A label line is ``class cx cy w h`` normalised to [0, 1] (a polygon ``class x1 y1 x2 y2 ...`` becomes its
bounding box). Boxes come out as ``[x1, y1, x2, y2]`` pixels of the image, whose size is read from the
file header. A line that cannot be used (a class id outside ``data.yaml``, coordinates outside [0, 1], not
numbers) is kept with its ``defect``, for the importer to report; the last line of a file needs no newline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from PIL import Image as PILImage

from formats.errors import FormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class YoloObject:
    line: int  # 1-based line of the label file
    class_index: int
    name: str | None  # None when the id is outside data.yaml's names
    bbox: list[float]  # xyxy pixels
    defect: str | None  # why the line cannot be used, if it cannot


@dataclass(frozen=True)
class YoloImage:
    subset: str
    stem: str
    path: Path
    width: int
    height: int
    objects: list[YoloObject]


def class_names(root: str | Path) -> list[str]:
    """The classes of ``data.yaml``, in id order (a list, or a mapping id -> name)."""
    path = Path(root) / "data.yaml"
    if not path.is_file():
        raise FormatError(f"{root} is not a YOLO directory: it has no data.yaml")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError) as exc:
        raise FormatError(f"data.yaml: not readable as YAML ({exc})") from exc
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        try:
            names = [names[i] for i in range(len(names))]
        except KeyError as exc:
            raise FormatError("data.yaml: names must map every id 0..n-1 to a name") from exc
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise FormatError("data.yaml: 'names' must be a non-empty list of class names")
    return names


def subsets(root: str | Path) -> list[str]:
    """The subset folders of a YOLO directory (those with an images/ folder), sorted."""
    return sorted(p.name for p in Path(root).iterdir() if (p / "images").is_dir())


def read_yolo_dir(root: str | Path, names: list[str], subset: str) -> list[YoloImage]:
    """Every image of one subset with its label lines, sorted by file stem; an image without a label
    file has no objects."""
    folder = Path(root) / subset
    if not (folder / "images").is_dir():
        raise FormatError(
            f"subset {subset!r} not found (expected {folder / 'images'}); found {subsets(root)}"
        )
    out = []
    for path in sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            with PILImage.open(path) as image:
                width, height = image.size
        except OSError as exc:
            raise FormatError(f"{subset}/images/{path.name}: not a readable image ({exc})") from exc
        objects = read_labels(folder / "labels" / f"{path.stem}.txt", names, width, height)
        out.append(YoloImage(subset, path.stem, path, width, height, objects))
    return out


def read_labels(labels: Path, names: list[str], width: int, height: int) -> list[YoloObject]:
    """The objects of one label file (none if there is no file) for an image of the given size."""
    if not labels.is_file():
        return []
    objects = []
    for number, raw in enumerate(labels.read_text().splitlines(), start=1):
        fields = raw.split()
        if fields:
            objects.append(_parse_line(number, fields, names, width, height))
    return objects


def _parse_line(number: int, fields: list[str], names: list[str], width: int, height: int) -> YoloObject:
    def bad(why: str, class_index: int = -1) -> YoloObject:
        return YoloObject(number, class_index, None, [0.0, 0.0, 0.0, 0.0], why)

    try:
        class_index = int(fields[0])
        values = [float(v) for v in fields[1:]]
    except ValueError:
        return bad(f"line {number}: not numbers ({' '.join(fields)[:60]})")
    if len(values) == 4:
        cx, cy, w, h = values
        corners = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
    elif len(values) >= 6 and len(values) % 2 == 0:  # a polygon: its bounding box
        xs, ys = values[0::2], values[1::2]
        corners = [min(xs), min(ys), max(xs), max(ys)]
    else:
        return bad(
            f"line {number}: {len(values)} numbers after the class id; expected cx cy w h", class_index
        )
    if not 0 <= class_index < len(names):
        return bad(
            f"line {number}: class id {class_index} is not in data.yaml (0..{len(names) - 1})", class_index
        )
    if any(not 0.0 <= v <= 1.0 for v in values):
        return bad(f"line {number}: coordinates outside [0, 1] ({' '.join(fields[1:])[:60]})", class_index)
    bbox = [corners[0] * width, corners[1] * height, corners[2] * width, corners[3] * height]
    return YoloObject(number, class_index, names[class_index], bbox, None)


def label_line(class_index: int, bbox: list[float], width: int, height: int) -> str:
    """``class cx cy w h``, normalised to [0, 1] with six decimals (the reader's inverse)."""
    x1, y1, x2, y2 = bbox
    values = ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)
    return f"{class_index} " + " ".join(f"{min(max(v, 0.0), 1.0):.6f}" for v in values)


def data_yaml(names: list[str], subsets: list[str]) -> str:
    """``data.yaml`` for a directory of the given subsets: ``path`` is the directory itself, ``train`` the
    first subset, ``val`` the second (or the first again), ``names`` a mapping id -> name."""
    train = subsets[0] if subsets else "train"
    val = subsets[1] if len(subsets) > 1 else train
    data = {"path": ".", "train": f"{train}/images", "val": f"{val}/images", "names": dict(enumerate(names))}
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
