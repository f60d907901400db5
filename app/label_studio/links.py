"""Connecting a Label Studio project to a boxal project (``/setup``): linked once, found again by Label
Studio's project id on every later call."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.label_studio.config import LabelConfig
from app.models import LabelStudioLink, Project
from app.projects.schemas import ProjectCreate, ProjectUpdate
from app.projects.service import create_project, get_project, update_project
from app.settings import Settings
from app.validation import describe_errors


def find(session: Session, ls_project: int, principal: Principal) -> tuple[LabelStudioLink, Project]:
    """The link of a Label Studio project and its boxal project; 404 for one not connected (or outside the
    token's projects, worded the same)."""
    link = session.scalar(select(LabelStudioLink).where(LabelStudioLink.ls_project == ls_project))
    if link is None or not principal.may_see(link.project_id):
        raise NotFound(
            f"Label Studio project {ls_project} is not connected to boxal: connect boxal as its ML backend "
            "(Label Studio then calls /setup)"
        )
    return link, get_project(session, link.project_id)


def connect(
    session: Session,
    ls_project: int,
    config: LabelConfig,
    extra: dict[str, Any] | None,
    principal: Principal,
    settings: Settings,
) -> Project:
    """Link ``ls_project`` to a boxal project (found, named in ``extra`` as boxal_project, or created with
    ``extra``'s settings) and bring the link up to date with the label config: classes it added are added
    (by an admin token); one it dropped or renamed is a 409, since boxal never removes a class."""
    extra = extra or {}
    unknown = sorted(set(extra) - {"boxal_project", "settings"})
    if unknown:
        raise Invalid(f"extra_params: unknown keys {unknown}; boxal reads boxal_project and settings")
    link = session.scalar(select(LabelStudioLink).where(LabelStudioLink.ls_project == ls_project))
    if link is not None:
        find(session, ls_project, principal)  # 404 outside the token's projects
        project = get_project(session, link.project_id, for_update=True)
    elif "boxal_project" in extra:
        project = _existing(session, extra["boxal_project"], principal)
    else:
        project = _created(session, ls_project, config, extra.get("settings"), principal, settings)
    _same_classes(session, project, config, principal, settings)
    if link is None:
        link = LabelStudioLink(
            ls_project=ls_project, project_id=project.id, from_name="", to_name="", value=""
        )
        session.add(link)
    link.from_name, link.to_name, link.value = config.from_name, config.to_name, config.value
    session.flush()
    return project


def _existing(session: Session, project_id: object, principal: Principal) -> Project:
    if not isinstance(project_id, int) or isinstance(project_id, bool) or project_id < 1:
        raise Invalid(f"extra_params.boxal_project: {project_id!r} is not a project id")
    if not principal.may_see(project_id):
        raise NotFound(f"project {project_id} does not exist")
    taken = session.scalar(select(LabelStudioLink.ls_project).where(LabelStudioLink.project_id == project_id))
    if taken is not None:
        raise Conflict(f"project {project_id} already serves Label Studio project {taken}")
    return get_project(session, project_id, for_update=True)


def _created(
    session: Session,
    ls_project: int,
    config: LabelConfig,
    project_settings: object,
    principal: Principal,
    settings: Settings,
) -> Project:
    if not principal.is_admin:
        raise Forbidden(
            "connecting a new Label Studio project creates a boxal project: use an admin token, or name an "
            "existing project in extra_params (boxal_project)"
        )
    try:
        data = ProjectCreate.model_validate(
            {"name": f"Label Studio project {ls_project}", "classes": config.classes,
             "settings": project_settings or {}}
        )  # fmt: skip
    except ValidationError as exc:
        raise Invalid(f"extra_params: {describe_errors(list(exc.errors()))}") from exc
    return create_project(session, data, settings)


def _same_classes(
    session: Session, project: Project, config: LabelConfig, principal: Principal, settings: Settings
) -> None:
    dropped = [name for name in project.classes if name not in config.classes]
    if dropped:
        raise Conflict(
            f"the label config lacks {dropped}, classes of boxal project {project.id} ({project.classes}); "
            "boxal never removes a class: add them back to the config"
        )
    added = [name for name in config.classes if name not in project.classes]
    if added:
        if not principal.is_admin:
            raise Forbidden(
                f"the label config adds {added}: an admin token adds classes to project {project.id}"
            )
        update_project(session, project, ProjectUpdate(add_classes=added), settings)
