from __future__ import annotations

from fastapi import APIRouter, Body, Depends

from app.auth.deps import Admin, current_principal
from app.deps import SettingsDep, WriteSession
from app.imports.schemas import ImportIn, ImportReport
from app.imports.service import run_import
from app.projects.service import get_project
from app.schemas import ERRORS, ProjectId

router = APIRouter(
    prefix="/v1/projects/{project_id}/imports",
    tags=["imports"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)


@router.post("", response_model=ImportReport)
def import_data(
    project_id: ProjectId, session: WriteSession, settings: SettingsDep, _: Admin, body: ImportIn = Body(...)
) -> ImportReport:
    """Ground truth or predictions from COCO JSON, or ground truth from a Pascal VOC or an Ultralytics YOLO
    directory; answers with a report of what was imported and what was skipped, and why."""
    project = get_project(session, project_id)
    report = run_import(session, project, body, settings)
    session.commit()
    return report
