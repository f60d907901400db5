"""What an import says, per format (COCO, VOC, YOLO): one SourceImage per image with its boxes.

Structural problems (unreadable files, dangling references) raise Invalid (422, nothing imported);
per-box defects are kept on the box and reported when the import is applied (service.py).
"""

from __future__ import annotations

import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from app.errors import Invalid, TooLarge
from app.images import remote
from app.images.storage import read_image_size, resolve_under_roots
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
    register_path: Path | str | None = None  # a local file or a remote URI
    defect: str | None = None  # why the image cannot be used (a remote object that cannot be read)


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


def read_sources(body: CocoImport | VocImport | YoloImport, settings: Settings) -> list[SourceImage]:
    """What the import says, read before any transaction begins (a prefix on object storage is read over
    the network: its annotation files into a temporary folder, its images' sizes through the cache)."""
    if isinstance(body, CocoImport):
        return coco_sources(body, settings)
    if not remote.is_remote(body.path):
        root = resolve_under_roots(body.path, settings, what="path")
        return (
            voc_sources(body, root, settings)
            if isinstance(body, VocImport)
            else yolo_sources(body, root, settings)
        )
    prefix = remote.as_folder(body.path)
    remote.check_allowed(prefix, settings, what="path")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if isinstance(body, VocImport):
                root = remote.mirror(prefix, settings, (".xml", ".txt"), Path(tmp))
                images = {PurePosixPath(u).name: u for u in remote.listing(prefix + "JPEGImages/", settings)}
                return voc_sources(body, root, settings, images)
            root = remote.mirror(prefix, settings, (".yaml", ".yml", ".txt"), Path(tmp))
            return _remote_yolo(body, root, prefix, settings)
        except remote.RemoteError as exc:
            raise exc.http() from exc


def voc_sources(
    body: VocImport, root: Path, settings: Settings, remote_images: dict[str, str] | None = None
) -> list[SourceImage]:
    """``remote_images``: for a prefix on object storage, JPEGImages/' file names and their URIs."""
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
            register_path=voc.image_path(root, annotation)
            if remote_images is None
            else _remote_image(annotation.file_name, annotation.stem, remote_images),
        )
        for i, obj in enumerate(annotation.objects):
            item = f"{annotation.stem}.xml object {i} ({obj.name})"
            source.boxes.append(SourceBox(obj.bbox, obj.name, item, defect=obj.defect))
        sources.append(source)
    return sources + _missing(body.ids, sources)


def _remote_image(file_name: str, stem: str, images: dict[str, str]) -> str | None:
    if file_name in images:
        return images[file_name]
    return next((images[stem + s] for s in voc.IMAGE_SUFFIXES if stem + s in images), None)


def yolo_sources(body: YoloImport, root: Path, settings: Settings) -> list[SourceImage]:
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
    return sources + _missing(body.ids, sources)


def _remote_yolo(body: YoloImport, root: Path, prefix: str, settings: Settings) -> list[SourceImage]:
    """A YOLO prefix: labels from the mirrored files, images where they are, sizes read through the cache
    (eight at a time); an image that cannot be read is kept with its defect, for the report."""
    try:
        names = yolo.class_names(root)
    except FormatError as exc:
        raise Invalid(f"YOLO: {exc}") from exc
    uris = remote.listing(prefix, settings)
    subsets = body.subsets or sorted({u.removeprefix(prefix).split("/")[0] for u in uris if "/images/" in u})
    chosen = [u for u in uris if u.removeprefix(prefix).split("/")[:2] in ([s, "images"] for s in subsets)]
    if body.ids is not None:
        wanted = set(body.ids)
        chosen = [u for u in chosen if PurePosixPath(u).stem in wanted]

    def one(uri: str) -> SourceImage:
        subset, stem = uri.removeprefix(prefix).split("/")[0], PurePosixPath(uri).stem
        source = SourceImage(keys=[stem], file_name=PurePosixPath(uri).name, width=None, height=None)
        try:
            width, height, _ = read_image_size(remote.fetch(uri, settings), settings, what=uri)
        except remote.RemoteError as exc:
            source.defect = f"{uri}: {exc.why}"
            return source
        except Invalid as exc:
            source.defect = exc.detail
            return source
        source.width, source.height, source.register_path = width, height, uri
        for obj in yolo.read_labels(root / subset / "labels" / f"{stem}.txt", names, width, height):
            item = f"{subset}/labels/{stem}.txt line {obj.line}"
            source.boxes.append(SourceBox(obj.bbox, obj.name or "", item, defect=obj.defect))
        return source

    with ThreadPoolExecutor(max_workers=8) as pool:
        sources = list(pool.map(one, chosen))
    if sum(1 + len(s.boxes) for s in sources) > settings.max_import_items:
        raise TooLarge(f"import has over {settings.max_import_items} images plus objects")
    return sources


def _missing(ids: list[str] | None, sources: list[SourceImage]) -> list[SourceImage]:
    """The ids that named no image, each a line of the report."""
    found = {key for source in sources for key in source.keys}
    return [
        SourceImage([name], name, None, None, defect="ids: no file with this stem in the directory")
        for name in sorted(set(ids or []) - found)
    ]


def _chosen(images: list[Any], ids: list[str] | None, settings: Settings) -> list[Any]:
    """The images (anything with ``stem`` and ``objects``) named by ``ids`` (all if None), within the
    import size limit; ids that name none of them are 422 (a typo imports nothing)."""
    if ids is not None:
        wanted = set(ids)
        found = [image for image in images if image.stem in wanted]
        if not found and images:
            example = ", ".join(sorted(image.stem for image in images)[:3])
            raise Invalid(
                f"ids: none of {sorted(wanted)[:10]} is a file stem in the directory (its stems look like: "
                f"{example}, ...)"
            )
        images = found
    if sum(1 + len(image.objects) for image in images) > settings.max_import_items:
        raise TooLarge(f"import has over {settings.max_import_items} images plus objects")
    return images
