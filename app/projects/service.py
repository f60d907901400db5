"""Projects: create, read, change settings. Creating a project opens round 0 (no model yet)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session

from app.db import load
from app.errors import Conflict, Invalid, NotFound
from app.images.storage import resolve_under_roots
from app.models import Box, Image, LabelEvent, Project, Round, utcnow
from app.projects.loops import LOOPS
from app.projects.schemas import NAMED_WEIGHTS, ProjectCreate, ProjectPublic, ProjectSettings, ProjectUpdate
from app.settings import Settings


def get_project(session: Session, project_id: int, *, for_update: bool = False) -> Project:
    project = load(session, Project, project_id, for_update=for_update)
    if project is None:
        raise NotFound(f"project {project_id} does not exist")
    return project


def project_settings(project: Project) -> ProjectSettings:
    return ProjectSettings.model_validate(project.settings)


def latest_round(session: Session, project_id: int, *, for_update: bool = False) -> Round:
    stmt = select(Round).where(Round.project_id == project_id).order_by(Round.number.desc()).limit(1)
    if for_update:
        stmt = stmt.with_for_update(key_share=True).execution_options(populate_existing=True)
    return session.scalars(stmt).one()


def check_weights_file(config: ProjectSettings, settings: Settings) -> None:
    """A weights file or Detectron2 config file must exist under an allowed root (the worker reads them:
    tensors and plain YAML only, never code)."""
    if config.weights is not None and config.weights not in NAMED_WEIGHTS:
        resolve_under_roots(config.weights, settings, what="settings.weights")
    if config.detectron2_config is not None and config.detectron2_config.startswith(("/", "file://")):
        resolve_under_roots(config.detectron2_config, settings, what="settings.detectron2_config")


def check_server_limits(config: ProjectSettings, settings: Settings) -> None:
    """Settings this server bounds more tightly than the schema's fixed limits (the served schema says so:
    app/openapi.py)."""
    if config.k > settings.max_k:
        raise Invalid(
            f"settings.k: at most {settings.max_k} queries per lease call (BOXAL_MAX_K), got {config.k}"
        )


def create_project(session: Session, data: ProjectCreate, settings: Settings) -> Project:
    if "k" not in data.settings.model_fields_set:  # the default k, on a server whose limit is below it
        data.settings.k = min(data.settings.k, settings.max_k)
    check_server_limits(data.settings, settings)
    check_weights_file(data.settings, settings)
    if session.scalar(select(Project.id).where(Project.name == data.name)) is not None:
        raise Conflict(f"a project named {data.name!r} already exists")
    project = Project(name=data.name, classes=list(data.classes), settings=data.settings.model_dump())
    session.add(project)
    session.flush()
    now = utcnow()
    session.add(Round(project_id=project.id, number=0, state="open", opened_at=now))
    session.flush()
    return project


def update_project(session: Session, project: Project, data: ProjectUpdate, settings: Settings) -> Project:
    if data.name is not None and data.name != project.name:
        if session.scalar(select(Project.id).where(Project.name == data.name)) is not None:
            raise Conflict(f"a project named {data.name!r} already exists")
        project.name = data.name
    if data.settings is not None:
        changes = data.settings.model_dump(exclude_unset=True)
        kept = project.settings
        if "loop" in changes:  # a loop chosen anew sets its settings, but for those this patch gives
            kept = {k: v for k, v in kept.items() if k not in LOOPS[changes["loop"]] or k in changes}
        merged: dict[str, Any] = {
            **kept,
            **{  # a setting made of figures (annotator_costs) changes only the figures given
                key: {**kept[key], **value}
                if isinstance(value, dict) and isinstance(kept.get(key), dict)
                else value
                for key, value in changes.items()
            },
        }
        try:
            config = ProjectSettings.model_validate(merged)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise Invalid(f"settings.{where}: {first['msg']}".replace("settings.: ", "settings: ")) from exc
        if "k" in data.settings.model_fields_set:  # a k written before the limit was lowered still leases
            check_server_limits(config, settings)
        check_weights_file(config, settings)
        project.settings = config.model_dump()
    if data.add_classes:
        present = sorted(name for name in data.add_classes if name in project.classes)
        if present:
            raise Conflict(f"add_classes: the project already has {present}")
        project.classes = [*project.classes, *data.add_classes]
    session.flush()
    return project


def to_public(session: Session, project: Project) -> ProjectPublic:
    return to_public_many(session, [project])[0]


def to_public_many(session: Session, projects: list[Project]) -> list[ProjectPublic]:
    """Public views of a page of projects in a fixed number of queries, whatever the page size."""
    if not projects:
        return []
    ids = [project.id for project in projects]
    newest = (
        select(Round.project_id, func.max(Round.number).label("number"))
        .where(Round.project_id.in_(ids))
        .group_by(Round.project_id)
        .subquery()
    )
    latest = {
        round_.project_id: round_
        for round_ in session.scalars(
            select(Round).join(
                newest, (Round.project_id == newest.c.project_id) & (Round.number == newest.c.number)
            )
        )
    }
    answers = dict(
        session.execute(
            select(LabelEvent.project_id, func.count())
            .join(Round, Round.project_id == LabelEvent.project_id)
            .join(newest, (Round.project_id == newest.c.project_id) & (Round.number == newest.c.number))
            .where(
                LabelEvent.kind == "answer",
                LabelEvent.id > func.coalesce(Round.snapshot_event_id, 0),
            )
            .group_by(LabelEvent.project_id)
        ).all()
    )
    boxes = dict(
        session.execute(
            select(Box.project_id, func.count())
            .join(Image, Image.id == Box.image_id)
            .join(Round, Round.project_id == Box.project_id)
            .join(newest, (Round.project_id == newest.c.project_id) & (Round.number == newest.c.number))
            .where(
                Box.status == "labeled",
                Image.split == "pool",
                Box.answer_event_id > func.coalesce(Round.snapshot_event_id, 0),
            )
            .group_by(Box.project_id)
        ).all()
    )
    serving = {
        (r.project_id, r.number): (r.pool_stats or {}).get("notice")
        for r in session.scalars(
            select(Round).where(
                tuple_(Round.project_id, Round.number).in_([(p.id, p.serving_round) for p in projects])
            )
        )
    }
    return [
        ProjectPublic(
            id=project.id,
            name=project.name,
            classes=project.classes,
            settings=project_settings(project),
            round=latest[project.id].number,
            serving_round=project.serving_round,
            answers_this_round=int(answers.get(project.id, 0)),
            boxes_this_round=int(boxes.get(project.id, 0)),
            notice=serving.get((project.id, project.serving_round)),
            created_at=project.created_at,
        )
        for project in projects
    ]


def list_projects(
    session: Session, *, limit: int, cursor: int | None, only: frozenset[int] | None = None
) -> list[Project]:
    stmt = select(Project).order_by(Project.id).limit(limit)
    if cursor is not None:
        stmt = stmt.where(Project.id > cursor)
    if only is not None:
        stmt = stmt.where(Project.id.in_(sorted(only)))
    return list(session.scalars(stmt))
