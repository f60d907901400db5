from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from app.auth.deps import Admin, current_principal
from app.deps import ReadSession
from app.exports.service import export_coco
from app.projects.service import get_project
from app.schemas import ERRORS, ProjectId

router = APIRouter(
    prefix="/v1/projects/{project_id}/export",
    tags=["export"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)


@router.get("", response_model=dict[str, Any])
def export(
    project_id: ProjectId,
    session: ReadSession,
    _: Admin,
    format: Annotated[Literal["coco"], Query(description="export format")] = "coco",
    predictions: Annotated[bool, Query(description="also the current predictions with scores")] = False,
    split: Annotated[Literal["pool", "test"] | None, Query(description="only this split")] = None,
) -> dict[str, Any]:
    """Labeled boxes as COCO (bbox [x, y, w, h]); with predictions=true, unlabeled predictions too."""
    project = get_project(session, project_id)
    return export_coco(session, project, split=split, predictions=predictions)
