from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, StreamingResponse

from app.auth.deps import Admin, current_principal
from app.deps import ReadSession, SettingsDep
from app.exports.archives import chunks, voc_zip, yolo_zip
from app.exports.partial import export_partial
from app.exports.service import export_coco
from app.projects.service import get_project
from app.schemas import ERRORS, ProjectId

router = APIRouter(
    prefix="/v1/projects/{project_id}/export",
    tags=["export"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)

FORMATS = Literal["coco", "voc", "yolo", "partial"]


@router.get(
    "",
    response_model=None,
    responses={
        200: {
            "description": "coco and partial: a COCO JSON object; voc and yolo: a zip of the layout",
            "content": {
                "application/json": {"schema": {"type": "object", "additionalProperties": True}},
                "application/zip": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
def export(
    project_id: ProjectId,
    session: ReadSession,
    settings: SettingsDep,
    _: Admin,
    format: Annotated[
        FORMATS,
        Query(
            description="coco: COCO JSON; voc: a zip of the Pascal VOC layout; yolo: a zip of the "
            "Ultralytics layout with data.yaml; partial: COCO plus what the next round trains on, box by "
            "box (role, weight, predicting model), negatives and ignore regions"
        ),
    ] = "coco",
    predictions: Annotated[bool, Query(description="coco: also the current predictions with scores")] = False,
    split: Annotated[
        Literal["pool", "test"] | None, Query(description="only this split (partial: the pool)")
    ] = None,
    complete: Annotated[
        bool, Query(description="voc, yolo: only fully labeled images (default: partly labeled ones too)")
    ] = False,
    images: Annotated[bool, Query(description="voc, yolo: put the image files in the zip too")] = False,
) -> Any:
    """Labeled boxes in the format asked for (COCO bbox [x, y, w, h]; VOC 1-based whole pixels; YOLO
    normalised centre and size); partly labeled images are listed apart in VOC and YOLO, whose layouts
    cannot say so."""
    project = get_project(session, project_id)
    if format == "partial":
        return JSONResponse(export_partial(session, project))
    if format == "coco":
        return JSONResponse(export_coco(session, project, split=split, predictions=predictions))
    build = voc_zip if format == "voc" else yolo_zip
    archive = build(session, project, settings, split=split, complete=complete, images=images)
    name = f"boxal-{project.id}-{format}.zip"
    return StreamingResponse(
        chunks(archive),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
