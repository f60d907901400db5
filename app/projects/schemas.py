"""The project resource's shapes: create, update (settings in app/projects/settings.py), public."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo

from app.projects.settings import (  # noqa: F401  (the settings' names, where the API has always had them)
    MODEL_PRESETS,
    NAMED_WEIGHTS,
    WEIGHTS_PATTERN,
    ClassName,
    ModelPreset,
    ProjectSettings,
)
from app.schemas import Strict


def _partial(model: type[BaseModel], name: str) -> type[BaseModel]:
    """The model's fields, each optional (absent: unchanged), with their types, limits and descriptions;
    the rules between fields are checked on the merged result."""
    fields: dict[str, Any] = {
        field: (info.annotation, FieldInfo.merge_field_infos(info, default=None, default_factory=None))
        for field, info in model.model_fields.items()
    }
    return create_model(name, __base__=Strict, **fields)


ProjectSettingsPatch = _partial(ProjectSettings, "ProjectSettingsPatch")


class ProjectCreate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    classes: list[ClassName] = Field(min_length=1, max_length=1000, json_schema_extra={"uniqueItems": True})
    settings: ProjectSettings = Field(default_factory=ProjectSettings)

    @model_validator(mode="after")
    def _unique_classes(self) -> ProjectCreate:
        seen: set[str] = set()
        for name in self.classes:
            if name in seen:
                raise ValueError(f"class {name!r} is listed twice")
            seen.add(name)
        return self


class ProjectUpdate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    settings: ProjectSettingsPatch | None = Field(  # type: ignore[valid-type]
        None, description="settings to change; the others keep their values"
    )
    add_classes: list[ClassName] | None = Field(
        None,
        max_length=1000,
        json_schema_extra={"uniqueItems": True},
        description="classes appended to the list (never removed); one already there is a conflict (409)",
    )

    @field_validator("add_classes")
    @classmethod
    def _listed_once(cls, names: list[str] | None) -> list[str] | None:
        if names is not None and len(set(names)) != len(names):
            raise ValueError("a class is listed twice")
        return names


class ProjectPublic(BaseModel):
    id: int
    name: str
    classes: list[str]
    settings: ProjectSettings
    round: int = Field(description="number of the latest round")
    serving_round: int = Field(description="round whose ranking the pool is served from")
    answers_this_round: int = Field(description="answers since the latest round began")
    boxes_this_round: int = Field(description="boxes obtained since the latest round began")
    notice: str | None = Field(
        None, description="the serving round's notice: why it serves image queries, and what to change"
    )
    created_at: datetime
