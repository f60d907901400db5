"""VOC and YOLO exports: a zip of the layout each tool reads, labeled boxes only.

Neither layout can say that an image is partly labeled (an unboxed object there is not background), so
partly labeled images are listed apart: ``ImageSets/Main/partial.txt`` (VOC) or ``partial.txt`` (YOLO);
``complete=true`` leaves them out. With ``images=true`` the image files go into the zip too (VOC:
``JPEGImages/``; YOLO: ``<subset>/images/``), which YOLO readers need to pair labels with images.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from sqlalchemy.orm import Session

from app.exports.labeled import LabeledImage, labeled_images
from app.images import remote
from app.models import Project
from app.settings import Settings
from formats import voc, yolo

SUBSETS = {"pool": "train", "test": "val"}  # YOLO subset folders; VOC image sets: trainval, test
VOC_SETS = {"pool": "trainval", "test": "test"}
SPOOL_BYTES = 64 * 1024 * 1024


def _file_name(item: LabeledImage) -> str:
    return item.stem + (Path(item.image.file_name).suffix or ".jpg")


def _add_image(
    archive: zipfile.ZipFile, item: LabeledImage, name: str, missing: list[str], settings: Settings
) -> None:
    where = item.image.path
    if remote.is_remote(where):
        try:
            archive.write(remote.fetch(where, settings), name)
        except remote.RemoteError as exc:
            missing.append(f"{item.stem}\t{where}\t{exc.why}")
    elif Path(where).is_file():
        archive.write(where, name)
    else:
        missing.append(f"{item.stem}\t{where}\tnot on disk")


def voc_zip(
    session: Session,
    project: Project,
    settings: Settings,
    *,
    split: str | None,
    complete: bool,
    images: bool,
) -> IO[bytes]:
    out = _spool()
    sets: dict[str, list[str]] = {}
    missing: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in labeled_images(session, project, split=split, complete_only=complete):
            name = _file_name(item)
            objects = [(project.classes[b.label], b.bbox) for b in item.boxes]
            xml = voc.voc_xml(name, item.image.width, item.image.height, objects)
            archive.writestr(f"Annotations/{item.stem}.xml", xml)
            sets.setdefault(VOC_SETS[item.image.split], []).append(item.stem)
            if not item.complete:
                sets.setdefault("partial", []).append(item.stem)
            if images:
                _add_image(archive, item, f"JPEGImages/{name}", missing, settings)
        for image_set, stems in sets.items():
            archive.writestr(f"ImageSets/Main/{image_set}.txt", "".join(f"{s}\n" for s in stems))
        _finish(archive, missing)
    out.seek(0)
    return out


def yolo_zip(
    session: Session,
    project: Project,
    settings: Settings,
    *,
    split: str | None,
    complete: bool,
    images: bool,
) -> IO[bytes]:
    out = _spool()
    used: list[str] = []
    partial: list[str] = []
    missing: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for item in labeled_images(session, project, split=split, complete_only=complete):
            subset = SUBSETS[item.image.split]
            if subset not in used:
                used.append(subset)
            width, height = item.image.width, item.image.height
            lines = [yolo.label_line(b.label, b.bbox, width, height) for b in item.boxes]
            archive.writestr(f"{subset}/labels/{item.stem}.txt", "".join(f"{line}\n" for line in lines))
            if not item.complete:
                partial.append(f"{subset}/images/{_file_name(item)}")
            if images:
                _add_image(archive, item, f"{subset}/images/{_file_name(item)}", missing, settings)
        archive.writestr(
            "data.yaml", yolo.data_yaml(project.classes, sorted(used, key=list(SUBSETS.values()).index))
        )
        if partial:
            archive.writestr("partial.txt", "".join(f"{p}\n" for p in partial))
        _finish(archive, missing)
    out.seek(0)
    return out


def _spool() -> IO[bytes]:
    """Memory up to SPOOL_BYTES, then a temporary file: closed by ``chunks`` once the zip is sent."""
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)


def _finish(archive: zipfile.ZipFile, missing: list[str]) -> None:
    if missing:  # an image file gone from disk: its labels are exported, the file is listed
        archive.writestr("missing_images.txt", "".join(f"{m}\n" for m in missing))


def chunks(handle: IO[bytes], size: int = 1 << 20) -> Iterator[bytes]:
    try:
        while block := handle.read(size):
            yield block
    finally:
        handle.close()
