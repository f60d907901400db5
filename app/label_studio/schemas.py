"""The ML-backend protocol's payloads as Label Studio sends them (label-studio ``ml/api_connector.py`` and
its webhooks): fields boxal does not read are let through, since Label Studio adds some from version to
version; those it reads are checked with strict types, and a payload missing one is a 422 naming it."""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from app.schemas import MAX_ID


class Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, strict=True)


PROJECT_TEXT = r"[1-9][0-9]{0,8}(\.[^\n]*)?"  # "<id>.<created_at timestamp>", as Label Studio writes it
_PROJECT_NUMBER = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_PROJECT_FORMS = [_PROJECT_NUMBER, {"type": "string", "pattern": f"^{PROJECT_TEXT}$"}]


def project_id(project: object) -> int:
    """Label Studio names a project "<id>.<created_at timestamp>" in the protocol, by its id (or its
    serialized record) in webhooks. Exactly the forms the schema states (``LabelStudioProject``)."""
    if isinstance(project, dict):  # a serialized record: its numeric id
        project = project.get("id")
        if not isinstance(project, int):
            project = None
    if isinstance(project, int) and not isinstance(project, bool):
        found: int | None = project
    elif isinstance(project, str) and re.fullmatch(PROJECT_TEXT, project):
        found = int(project.split(".", 1)[0])
    else:
        found = None
    if found is None or not 1 <= found <= MAX_ID:
        raise ValueError(f"project: {project!r} is not a Label Studio project id")
    return found


LabelStudioProject = Annotated[
    int,
    BeforeValidator(project_id),
    WithJsonSchema(
        {
            "anyOf": _PROJECT_FORMS,
            "description": 'the Label Studio project: its id, or "<id>.<timestamp>" as the protocol sends it',
        }
    ),
]
WebhookProject = Annotated[
    int | None,
    BeforeValidator(lambda value: None if value is None else project_id(value)),
    WithJsonSchema(
        {
            "anyOf": [
                *_PROJECT_FORMS,
                {"type": "object", "properties": {"id": _PROJECT_NUMBER}, "required": ["id"]},
                {"type": "null"},
            ],
            "description": "the Label Studio project: its id, or its serialized record",
        }
    ),
]


class SetupIn(Lenient):
    project: LabelStudioProject
    label_config: str = Field(alias="schema", max_length=1_000_000)
    extra_params: dict[str, Any] | None = Field(
        None,
        description="the ML backend's extra params in Label Studio: boxal_project (link an existing project) "
        "and settings (a new project's settings)",
    )

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
    project: LabelStudioProject
    label_config: str | None = Field(None, max_length=1_000_000)


class AnnotationIn(Lenient):
    id: int = Field(ge=1, le=MAX_ID)
    result: list[dict[str, Any]] = Field(default_factory=list, max_length=10_000)
    lead_time: float | None = Field(None, ge=0, description="seconds the annotator spent")
    completed_by: int | dict[str, Any] | None = None
    was_cancelled: bool = False


class WebhookIn(Lenient):
    action: str = Field(max_length=100)
    project: WebhookProject = None
    annotation: AnnotationIn | None = None
    task: TaskIn | None = None


class TrainIn(Lenient):
    """The older training call (``POST /train``), sent where Label Studio's START_TRAINING webhook is off."""

    project: LabelStudioProject
