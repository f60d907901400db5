"""COCO export of what the project knows: labeled boxes, and on request the current predictions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Box, Image, Project
from app.rounds import ranking
from formats.coco import to_xywh


def export_coco(
    session: Session, project: Project, *, split: str | None, predictions: bool
) -> dict[str, Any]:
    images_stmt = select(Image).where(Image.project_id == project.id).order_by(Image.id)
    if split:
        images_stmt = images_stmt.where(Image.split == split)
    images = list(session.scalars(images_stmt))
    ids = [image.id for image in images]
    annotations: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for start in range(0, len(ids), 1000):
        stmt = (
            select(Box)
            .where(Box.image_id.in_(ids[start : start + 1000]), Box.status.in_(("labeled", "unlabeled")))
            .order_by(Box.id)
        )
        boxes = list(session.scalars(stmt))
        served = ranking.served_informativeness(session, project, boxes) if predictions else {}
        for box in boxes:
            x, y, w, h = to_xywh(box.bbox)
            if box.status == "labeled":
                annotations.append(
                    {
                        "id": box.id,
                        "image_id": box.image_id,
                        "category_id": box.label + 1,
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                        "boxal_source": box.source,
                    }
                )
            elif predictions and box.source == "predicted":
                results.append(
                    {
                        "id": box.id,
                        "image_id": box.image_id,
                        "category_id": box.label + 1,
                        "bbox": [x, y, w, h],
                        "score": box.score,
                        "informativeness": served[box.id],
                        "model_version": box.model_version,
                    }
                )
    out: dict[str, Any] = {
        "info": {"description": f"boxal project {project.name}", "project_id": project.id},
        "images": [
            {
                "id": image.id,
                "file_name": image.file_name,
                "width": image.width,
                "height": image.height,
                "boxal_external_id": image.external_id,
                "boxal_split": image.split,
                "boxal_fully_labeled": image.fully_labeled,
            }
            for image in images
        ],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(project.classes)],
        "annotations": annotations,
    }
    if predictions:
        out["predictions"] = results
    return out
