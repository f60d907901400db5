"""The partial-label export: COCO plus, per training image, what the next round would train on.

``annotations`` are the labeled boxes (any COCO reader loads them); ``boxal_training`` holds the records of
the training set builder (app/rounds/training_set.py) as of the latest label event, unchanged: each box's
role (``labeled``, weight 1; ``noisy``, weight ``lambda_d`` under ``noisy: dampen``), the model version that
predicted it, the regions answered background or duplicate (``negatives``, trained as background) and the
``ignore`` regions. With ``noisy_targets: refreshed`` the worker predicts the training images again before
training, so the noisy targets and ignore regions it trains on come from the serving model at that time;
the export gives the builder's (first predictions) and says so in ``noisy_from``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.exports.service import export_coco
from app.models import Box, LabelEvent, Project
from app.projects.service import project_settings
from app.rounds.training_set import training_set
from formats.coco import to_xywh


def export_partial(session: Session, project: Project) -> dict[str, Any]:
    settings = project_settings(project)
    snapshot = session.scalar(select(func.max(LabelEvent.id)).where(LabelEvent.project_id == project.id)) or 0
    records = training_set(
        session,
        project.id,
        snapshot,
        lambda_d=settings.lambda_d,
        noisy=settings.noisy,
        images=settings.training_images,
    )
    ids = [b.box_id for r in records for b in r.boxes if b.box_id is not None]
    versions: dict[int, tuple[str, str | None]] = {}
    for start in range(0, len(ids), 1000):
        stmt = select(Box.id, Box.source, Box.model_version).where(Box.id.in_(ids[start : start + 1000]))
        versions.update((box_id, (source, version)) for box_id, source, version in session.execute(stmt))
    out = export_coco(session, project, split="pool", predictions=False)
    out["boxal_training"] = {
        "snapshot_event_id": snapshot,
        "lambda_d": settings.lambda_d,
        "noisy": settings.noisy,
        "training_images": settings.training_images,
        "noisy_targets": settings.noisy_targets,
        "noisy_from": "first predictions"
        if settings.noisy_targets == "frozen"
        else "first predictions; training refreshes them from the serving model",
        "images": [
            {
                "image_id": record.image_id,
                "complete": record.complete,
                "boxes": [
                    {
                        "box_id": box.box_id,
                        "bbox": to_xywh(box.bbox),
                        "category_id": box.label + 1,
                        "role": "noisy" if box.noisy else "labeled",
                        "weight": box.weight,
                        "source": versions.get(box.box_id or -1, (None, None))[0],
                        "model_version": versions.get(box.box_id or -1, (None, None))[1],
                    }
                    for box in record.boxes
                ],
                "negatives": [to_xywh(region) for region in record.negatives],
                "ignore": [to_xywh(region) for region in record.ignore],
            }
            for record in records
        ],
    }
    out["info"]["boxal_format"] = "partial"
    return out
