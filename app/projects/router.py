from __future__ import annotations

from fastapi import APIRouter, Depends, status

from app.auth.deps import Admin, Authenticated, InProject, current_principal
from app.deps import Paging, ReadSession, SettingsDep, WriteSession
from app.projects import service
from app.projects.schemas import ProjectCreate, ProjectPublic, ProjectUpdate
from app.schemas import ERRORS, Page, ProjectId

router = APIRouter(
    prefix="/v1/projects", tags=["projects"], responses=ERRORS, dependencies=[Depends(current_principal)]
)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ProjectPublic)
def create_project(
    body: ProjectCreate, session: WriteSession, settings: SettingsDep, _: Admin
) -> ProjectPublic:
    project = service.create_project(session, body, settings)
    out = service.to_public(session, project)
    session.commit()
    return out


@router.get("", response_model=Page[ProjectPublic])
def list_projects(session: ReadSession, page: Paging, principal: Authenticated) -> Page[ProjectPublic]:
    """The projects the token may see (all of them for an admin)."""
    scope = None if principal.is_admin else principal.projects
    projects = service.list_projects(session, limit=page.limit, cursor=page.cursor, only=scope)
    items = service.to_public_many(session, projects)
    next_cursor = projects[-1].id if len(projects) == page.limit else None
    return Page[ProjectPublic](items=items, next_cursor=next_cursor)


@router.get("/{project_id}", response_model=ProjectPublic)
def get_project(project_id: ProjectId, session: ReadSession, _: InProject) -> ProjectPublic:
    return service.to_public(session, service.get_project(session, project_id))


@router.patch("/{project_id}", response_model=ProjectPublic)
def update_project(
    project_id: ProjectId, body: ProjectUpdate, session: WriteSession, settings: SettingsDep, _: Admin
) -> ProjectPublic:
    project = service.update_project(session, service.get_project(session, project_id), body, settings)
    out = service.to_public(session, project)
    session.commit()
    return out
