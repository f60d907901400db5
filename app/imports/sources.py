"""What an import says, per format (COCO, VOC, YOLO): one SourceImage per image with its boxes.

Structural problems (unreadable files, dangling references) raise Invalid (422, nothing imported);
per-box defects are kept on the box and reported when the import is applied (service.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.errors import Invalid, TooLarge
from app.images.storage import resolve_under_roots
from app.imports.schemas import CocoImport, VocImport, YoloImport
from app.settings import Settings
from formats import FormatError, coco, voc, yolo


@dataclass
class SourceBox:
    bbox: list[float]
    class_name: str
    item: str
    score: float | None = None
    probs: list[float] | None = None
    informativeness: float | None = None
    defect: str | None = None  # why the file's box cannot be used


@dataclass
class SourceImage:
    """One image as the import file describes it, with its boxes."""

    keys: list[str]  # external_id candidates, best first
    file_name: str
    width: int | None
    height: int | None
    boxes: list[SourceBox] = field(default_factory=list)
    register_path: Path | None = None


def coco_sources(body: CocoImport, settings: Settings) -> list[SourceImage]:
    data = body.data
    count = len(data.get("images") or []) + len(data.get("annotations") or [])
    if count > settings.max_import_items:
        raise TooLarge(
            f"import has {count} images plus annotations; the limit is {settings.max_import_items}"
        )
    try:
        parsed = coco.parse_coco(data, require_images=body.kind == "annotations")
    except FormatError as exc:
        raise Invalid(f"COCO data: {'; '.join(exc.problems)}") from exc
    sources: dict[Any, SourceImage] = {
        image.id: SourceImage(
            keys=[
                *([image.external_id] if image.external_id else []),
                str(image.id),
                Path(image.file_name).stem,
            ],
            file_name=Path(image.file_name).name,
            width=image.width,
            height=image.height,
        )
        for image in parsed.images
    }
    for annotation in parsed.annotations:
        source = sources.get(annotation.image_id)
        if source is None:  # predictions without an images list: image_id is the external id
            source = sources[annotation.image_id] = SourceImage(
                keys=[str(annotation.image_id)], file_name=str(annotation.image_id), width=None, height=None
            )
        item = f"annotations[{annotation.index}]"
        if annotation.iscrowd:
            source.boxes.append(
                SourceBox([], "", item, defect="crowd region (iscrowd=1), not an object instance")
            )
            continue
        source.boxes.append(
            SourceBox(
                bbox=annotation.bbox,
                class_name=parsed.category_name(annotation),
                item=item,
                score=annotation.score,
                probs=annotation.probs,
                informativeness=annotation.informativeness,
            )
        )
    if body.kind == "predictions":
        missing = [box.item for source in sources.values() for box in source.boxes if box.score is None]
        if missing:
            raise Invalid(f"COCO predictions need a score on every annotation; missing on {missing[:10]}")
    return list(sources.values())


def voc_sources(body: VocImport, settings: Settings) -> list[SourceImage]:
    root = resolve_under_roots(body.path, settings, what="path")
    try:
        annotations = voc.read_voc_dir(root, body.image_set)
    except FormatError as exc:
        raise Invalid(f"VOC: {exc}") from exc
    annotations = _chosen(annotations, body.ids, settings)
    sources = []
    for annotation in annotations:
        source = SourceImage(
            keys=[annotation.stem],
            file_name=annotation.file_name,
            width=annotation.width,
            height=annotation.height,
            register_path=voc.image_path(root, annotation),
        )
        for i, obj in enumerate(annotation.objects):
            item = f"{annotation.stem}.xml object {i} ({obj.name})"
            source.boxes.append(SourceBox(obj.bbox, obj.name, item, defect=obj.defect))
        sources.append(source)
    return sources


def yolo_sources(body: YoloImport, settings: Settings) -> list[SourceImage]:
    root = resolve_under_roots(body.path, settings, what="path")
    try:
        names = yolo.class_names(root)
        images = [
            image
            for subset in body.subsets or yolo.subsets(root)
            for image in yolo.read_yolo_dir(root, names, subset)
        ]
    except FormatError as exc:
        raise Invalid(f"YOLO: {exc}") from exc
    images = _chosen(images, body.ids, settings)
    sources = []
    for image in images:
        source = SourceImage(
            keys=[image.stem],
            file_name=image.path.name,
            width=image.width,
            height=image.height,
            register_path=image.path,
        )
        for obj in image.objects:
            item = f"{image.subset}/labels/{image.stem}.txt line {obj.line}"
            source.boxes.append(SourceBox(obj.bbox, obj.name or "", item, defect=obj.defect))
        sources.append(source)
    return sources


def _chosen(images: list[Any], ids: list[str] | None, settings: Settings) -> list[Any]:
    """The images (anything with ``stem`` and ``objects``) named by ``ids`` (all if None), within the
    import size limit."""
    if ids is not None:
        wanted = set(ids)
        images = [image for image in images if image.stem in wanted]
    if sum(1 + len(image.objects) for image in images) > settings.max_import_items:
        raise TooLarge(f"import has over {settings.max_import_items} images plus objects")
    return images
