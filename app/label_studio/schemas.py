"""The ML-backend protocol's payloads as Label Studio sends them (label-studio ``ml/api_connector.py`` and
its webhooks): fields boxal does not read are let through, since Label Studio adds some from version to
version; those it reads are checked with strict types, and a payload missing one is a 422 naming it."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas import MAX_ID


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)


def project_id(project: object) -> int:
    """Label Studio names a project "<id>.<created_at timestamp>" in the protocol, by its id (or its
    serialized record) in webhooks."""
    if isinstance(project, dict):
        project = project.get("id")
    if isinstance(project, int) and not isinstance(project, bool):
        found: int | None = project
    elif isinstance(project, str) and project.split(".", 1)[0].isdigit():
        found = int(project.split(".", 1)[0])
    else:
        found = None
    if found is None or not 1 <= found <= MAX_ID:
        raise ValueError(f"project: {project!r} is not a Label Studio project id")
    return found


class SetupIn(Lenient):
    project: int = Field(description='"<id>.<timestamp>": the Label Studio project')
    label_config: str = Field(alias="schema", max_length=1_000_000)
    extra_params: dict[str, Any] | None = Field(
        None,
        description="the ML backend's extra params in Label Studio: boxal_project (link an existing project) "
        "and settings (a new project's settings)",
    )

    _project = field_validator("project", mode="before")(lambda v: project_id(v))

    @field_validator("extra_params", mode="before")
    @classmethod
    def _json_text(cls, value: object) -> object:
        """Label Studio keeps extra params as text; empty text means none."""
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return json.loads(value)
            except ValueError as exc:
                raise ValueError(f"extra_params is not JSON: {exc}") from exc
        return value


class TaskIn(Lenient):
    id: int = Field(ge=1, le=MAX_ID)
    data: dict[str, Any]


class PredictIn(Lenient):
    tasks: list[TaskIn] = Field(min_length=1, max_length=10_000)
    project: int
    label_config: str | None = Field(None, max_length=1_000_000)

    _project = field_validator("project", mode="before")(lambda v: project_id(v))


class AnnotationIn(Lenient):
    id: int = Field(ge=1, le=MAX_ID)
    result: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    lead_time: float | None = Field(None, ge=0, description="seconds the annotator spent")
    completed_by: int | dict[str, Any] | None = None
    was_cancelled: bool = False


class WebhookIn(Lenient):
    action: str = Field(max_length=100)
    project: int | None = None
    annotation: AnnotationIn | None = None
    task: TaskIn | None = None

    @field_validator("project", mode="before")
    @classmethod
    def _project_id(cls, value: object) -> int | None:
        return None if value is None else project_id(value)


class TrainIn(Lenient):
    """The older training call (``POST /train``), sent where Label Studio's START_TRAINING webhook is off."""

    project: int

    _project = field_validator("project", mode="before")(lambda v: project_id(v))
