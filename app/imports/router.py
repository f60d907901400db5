from __future__ import annotations

from fastapi import APIRouter, Body, Depends

from app.auth.deps import Admin, current_principal
from app.deps import DatabaseDep, SettingsDep
from app.imports.schemas import ImportIn, ImportReport
from app.imports.service import run_import
from app.imports.sources import read_sources
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
    project_id: ProjectId, db: DatabaseDep, settings: SettingsDep, _: Admin, body: ImportIn = Body(...)
) -> ImportReport:
    """Ground truth or predictions from COCO JSON, or ground truth from a Pascal VOC or an Ultralytics YOLO
    directory (local, or a prefix on object storage); answers with a report of what was imported and what
    was skipped, and why."""
    with db.transaction(write=False) as session:
        get_project(session, project_id)  # 404 before reading anything
    sources = read_sources(body, settings)  # files and remote reads, with no transaction open
    with db.transaction() as session:
        return run_import(session, get_project(session, project_id), body, sources)
