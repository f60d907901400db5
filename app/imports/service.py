"""Imports: what an import file says (sources.py), matched to registered images and applied.

Defects (zero-size boxes, unknown classes, unregistered images) are skipped and reported; broken
structure (dangling references, unreadable files) rejects the whole import with 422.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.images import service as images_service
from app.imports.schemas import CocoImport, ImportReport, SkippedItem, VocImport, YoloImport
from app.imports.sources import SourceBox, SourceImage
from app.labels.resolve import resolve_predictions_on_complete_image
from app.models import Box, Image, Project
from formats.geometry import box_defect, clip_box

MAX_LISTED_SKIPS = 100


class Report:
    def __init__(self, fmt: str, kind: str) -> None:
        self.out = ImportReport(format=fmt, kind=kind)
        self._reasons: Counter[str] = Counter()

    def skip(self, item: str, reason: str) -> None:
        self.out.skipped_count += 1
        self._reasons[reason_key(reason)] += 1
        if len(self.out.skipped) < MAX_LISTED_SKIPS:
            self.out.skipped.append(SkippedItem(item=item, reason=reason))

    def finish(self) -> ImportReport:
        self.out.skipped_by_reason = dict(self._reasons.most_common())
        return self.out


def reason_key(reason: str) -> str:
    """A skip reason with what varies from item to item taken out, so that alike skips count together:
    a list becomes [...], a quoted name and a number _ ("class _ is not one of the project's classes
    [...]", "zero or negative size (_ x _)")."""
    reason = re.sub(r"\[[^\]]*\]", "[...]", reason)
    reason = re.sub(r"(?<![A-Za-z])'[^']*'", "_", reason)
    return re.sub(r"-?\d+(\.\d+)?", "_", reason)


def run_import(
    session: Session, project: Project, body: CocoImport | VocImport | YoloImport, sources: list[SourceImage]
) -> ImportReport:
    """Apply what ``read_sources`` read (outside this transaction) to the project."""
    if isinstance(body, CocoImport):
        report = Report("coco", body.kind)
        kind, model_version = body.kind, body.model_version
    else:
        report = Report(body.format, "annotations")
        kind, model_version = "annotations", None
    for source in sources:
        if source.defect:
            report.skip(f"image {source.keys[0]} ({source.file_name})", source.defect)
    sources = [source for source in sources if not source.defect]
    if not isinstance(body, CocoImport) and body.register_split:
        _register_missing(session, project, sources, body.register_split, report)
    _apply(session, project, sources, kind, model_version, report)
    session.flush()
    return report.finish()


def _match(session: Session, project: Project, sources: list[SourceImage]) -> dict[int, Image]:
    """Registered image for each source (by external id, then by file name), keyed by source index."""
    by_external: dict[str, Image] = {}
    keys = sorted({key for source in sources for key in source.keys})
    for start in range(0, len(keys), 500):
        stmt = select(Image).where(
            Image.project_id == project.id, Image.external_id.in_(keys[start : start + 500])
        )
        by_external.update((image.external_id, image) for image in session.scalars(stmt))
    matched: dict[int, Image] = {}
    unmatched: list[int] = []
    for i, source in enumerate(sources):
        image = next((by_external[key] for key in source.keys if key in by_external), None)
        if image is None:
            unmatched.append(i)
        else:
            matched[i] = image
    names = sorted({sources[i].file_name for i in unmatched})
    by_name: dict[str, list[Image]] = {}
    for start in range(0, len(names), 500):
        stmt = select(Image).where(
            Image.project_id == project.id, Image.file_name.in_(names[start : start + 500])
        )
        for image in session.scalars(stmt):
            by_name.setdefault(image.file_name, []).append(image)
    for i in unmatched:
        candidates = by_name.get(sources[i].file_name, [])
        if len(candidates) == 1:
            matched[i] = candidates[0]
    return matched


def _register_missing(
    session: Session, project: Project, sources: list[SourceImage], split: str, report: Report
) -> None:
    matched = _match(session, project, sources)
    new = []
    for i, source in enumerate(sources):
        if i in matched:
            continue
        if source.register_path is None:
            report.skip(source.file_name, "image file not found (VOC: under JPEGImages/)")
            continue
        if source.width is None or source.height is None:
            report.skip(source.file_name, "annotation gives no image size")
            continue
        new.append(
            images_service.NewImage(source.register_path, split, source.keys[0], source.width, source.height)
        )
    if new:
        images_service.register(session, project, new)
        report.out.images_registered = len(new)


def _apply(
    session: Session,
    project: Project,
    sources: list[SourceImage],
    kind: str,
    model_version: str | None,
    report: Report,
) -> None:
    class_index = {name: i for i, name in enumerate(project.classes)}
    matched = _match(session, project, sources)
    image_ids = [image.id for image in matched.values()]
    with_truth: set[int] = set()
    for start in range(0, len(image_ids), 500):
        stmt = select(Box.image_id).where(
            Box.image_id.in_(image_ids[start : start + 500]), Box.source == "ground_truth"
        )
        with_truth.update(session.scalars(stmt))
    rows: list[dict[str, Any]] = []
    completed: list[Image] = []
    for i, source in enumerate(sources):
        image = matched.get(i)
        if image is None:
            report.skip(f"image {source.keys[0]} ({source.file_name})", "not registered in this project")
            continue
        report.out.images_matched += 1
        if source.width is not None and (source.width, source.height) != (image.width, image.height):
            report.skip(
                f"image {source.keys[0]}",
                f"the file says {source.width}x{source.height} but the registered image is "
                f"{image.width}x{image.height}",
            )
            continue
        if kind == "annotations":
            if image.fully_labeled or image.id in with_truth:
                report.skip(f"image {source.keys[0]}", "already has ground truth (imported or labeled)")
                continue
        elif image.split != "pool" or image.fully_labeled:
            report.skip(f"image {source.keys[0]}", "predictions go on pool images that are not fully labeled")
            continue
        for box in source.boxes:
            row = _box_row(project, image, box, kind, class_index, model_version, report)
            if row is not None:
                rows.append(row)
        if kind == "annotations":
            image.fully_labeled = True
            completed.append(image)
            if image.split == "pool":
                report.out.images_labeled += 1
            else:
                report.out.test_images += 1
    for start in range(0, len(rows), 5000):
        session.execute(insert(Box), rows[start : start + 5000])
    report.out.boxes_imported = len(rows)
    session.flush()
    for image in completed:
        if image.split == "pool":
            resolve_predictions_on_complete_image(
                session, image, annotator="import", round_number=0, query_id=None
            )


def _box_row(
    project: Project,
    image: Image,
    box: SourceBox,
    kind: str,
    class_index: dict[str, int],
    model_version: str | None,
    report: Report,
) -> dict[str, Any] | None:
    if box.defect:
        report.skip(box.item, box.defect)
        return None
    if box.class_name not in class_index:
        report.skip(
            box.item, f"class '{box.class_name}' is not one of the project's classes {project.classes}"
        )
        return None
    defect = box_defect(box.bbox, image.width, image.height)
    if defect:
        report.skip(box.item, defect)
        return None
    bbox = clip_box(box.bbox, image.width, image.height)
    if bbox != box.bbox:
        report.out.boxes_clipped += 1
    row: dict[str, Any] = {
        "project_id": project.id,
        "image_id": image.id,
        "x1": bbox[0],
        "y1": bbox[1],
        "x2": bbox[2],
        "y2": bbox[3],
        "label": class_index[box.class_name],
    }
    if kind == "annotations":
        row.update(source="ground_truth", status="labeled")
        return row
    if box.probs is not None and len(box.probs) != len(project.classes):
        report.skip(
            box.item, f"probs has {len(box.probs)} values; the project has {len(project.classes)} classes"
        )
        return None
    row.update(
        source="predicted",
        status="unlabeled",
        score=box.score,
        probs=box.probs,
        informativeness=box.informativeness,
        model_version=model_version or "import",
        round_predicted=project.serving_round,
    )
    return row
