"""Pascal VOC: ``Annotations/*.xml``, ``JPEGImages/``, ``ImageSets/Main/<set>.txt``.

VOC corners are 1-based inclusive pixel indices; like Detectron2 (which the paper used) boxes become
``[xmin - 1, ymin - 1, xmax, ymax]``. A box with ``xmax <= xmin`` or ``ymax <= ymin`` is degenerate.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from formats.errors import FormatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class VocObject:
    name: str
    bbox: list[float]  # xyxy pixels, converted
    difficult: bool
    defect: str | None  # why the box cannot be used, if it cannot


@dataclass(frozen=True)
class VocAnnotation:
    stem: str
    file_name: str
    width: int
    height: int
    objects: list[VocObject]


def parse_voc_xml(path: str | Path) -> VocAnnotation:
    """Parse one annotation file; FormatError names the file and what is wrong with it."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise FormatError(f"{path.name}: not a readable VOC XML file ({exc})") from exc
    if root.tag != "annotation":
        raise FormatError(f"{path.name}: the root element is <{root.tag}>, not <annotation>")
    try:
        width = int(float(_text(root, "size/width", path)))
        height = int(float(_text(root, "size/height", path)))
    except ValueError as exc:
        raise FormatError(f"{path.name}: <size> width/height are not numbers") from exc
    file_name = (root.findtext("filename") or "").strip() or path.stem + ".jpg"
    objects = []
    for i, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise FormatError(f"{path.name}: object {i} has no <name>")
        try:
            xmin, ymin, xmax, ymax = (
                float(_text(obj, f"bndbox/{tag}", path)) for tag in ("xmin", "ymin", "xmax", "ymax")
            )
        except ValueError as exc:
            raise FormatError(
                f"{path.name}: object {i} has a <bndbox> coordinate that is not a number"
            ) from exc
        defect = None
        if xmax <= xmin or ymax <= ymin:
            defect = f"zero or negative size (xmin={xmin:g}, ymin={ymin:g}, xmax={xmax:g}, ymax={ymax:g})"
        difficult = (obj.findtext("difficult") or "0").strip() == "1"
        objects.append(VocObject(name, [xmin - 1.0, ymin - 1.0, xmax, ymax], difficult, defect))
    return VocAnnotation(stem=path.stem, file_name=file_name, width=width, height=height, objects=objects)


def _text(element: ET.Element, tag: str, path: Path) -> str:
    value = element.findtext(tag)
    if value is None or not value.strip():
        raise FormatError(f"{path.name}: missing <{tag}>")
    return value.strip()


def image_set_ids(root: str | Path, image_set: str) -> list[str]:
    path = Path(root) / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise FormatError(f"image set {image_set!r} not found (expected {path})")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def read_voc_dir(root: str | Path, image_set: str | None = None) -> list[VocAnnotation]:
    """Every annotation of a VOC directory, or those of one image set, sorted by file stem."""
    root = Path(root)
    annotations_dir = root / "Annotations"
    if not annotations_dir.is_dir():
        raise FormatError(f"{root} is not a VOC directory: it has no Annotations/ folder")
    if image_set is None:
        paths = sorted(annotations_dir.glob("*.xml"))
    else:
        paths = [annotations_dir / f"{stem}.xml" for stem in image_set_ids(root, image_set)]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise FormatError(f"image set {image_set!r} names files that do not exist", missing[:10])
    return [parse_voc_xml(path) for path in paths]


def image_path(root: str | Path, annotation: VocAnnotation) -> Path | None:
    """The image file of an annotation under ``JPEGImages/``, or None if it is not there."""
    folder = Path(root) / "JPEGImages"
    candidate = folder / annotation.file_name
    if candidate.is_file():
        return candidate
    for suffix in IMAGE_SUFFIXES:
        candidate = folder / f"{annotation.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def voc_xml(file_name: str, width: int, height: int, objects: list[tuple[str, list[float]]]) -> bytes:
    """One annotation file for ``objects`` (class name, [x1, y1, x2, y2] pixels): corners become VOC's
    1-based whole pixels (``xmin = round(x1) + 1``, ``xmax = round(x2)``, the inverse of the reader), a box
    under a pixel keeping one pixel."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, (x1, y1, x2, y2) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = name
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        xmin, ymin = round(x1) + 1, round(y1) + 1
        corners = (xmin, ymin, max(round(x2), xmin), max(round(y2), ymin))
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), corners, strict=True):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=False) + b"\n"
