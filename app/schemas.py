"""API types shared by every domain: boxes, errors, pages."""

from __future__ import annotations

import math
from functools import cache
from types import UnionType
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

T = TypeVar("T")

MAX_ID = 2**31 - 1  # ids are 32-bit integers on PostgreSQL; anything larger names nothing
ProjectId = Annotated[int, Path(ge=1, le=MAX_ID, description="project id")]
ImageId = Annotated[int, Path(ge=1, le=MAX_ID, description="image id")]
QueryId = Annotated[int, Path(ge=1, le=MAX_ID, description="query id")]

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _check_bbox(value: list[float]) -> list[float]:
    x1, y1, x2, y2 = value
    if not all(math.isfinite(v) for v in value):
        raise ValueError("bbox coordinates must be finite numbers")
    if x2 <= x1:
        raise ValueError(f"bbox has zero or inverted width (x1={x1}, x2={x2}); boxes are [x1, y1, x2, y2]")
    if y2 <= y1:
        raise ValueError(f"bbox has zero or inverted height (y1={y1}, y2={y2}); boxes are [x1, y1, x2, y2]")
    return value


BBox = Annotated[
    list[FiniteFloat],
    Field(
        min_length=4, max_length=4, description="[x1, y1, x2, y2] in absolute pixels of the original image"
    ),
    AfterValidator(_check_bbox),
]


class Strict(BaseModel):
    """Request bodies: unknown fields are an error, not silently ignored, and types are what the schema
    says (no ``false`` for an integer, no ``"3"`` for a number). An integral number written as ``3.0`` is
    an integer, as JSON Schema has it (``3.5`` is not)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = _integer_fields(cls)
        out = None
        for name, value in data.items():
            kind = fields.get(name)
            if kind == "int" and _integral(value):
                out = out if out is not None else dict(data)
                out[name] = int(value)
            elif kind == "list" and isinstance(value, list) and any(_integral(v) for v in value):
                out = out if out is not None else dict(data)
                out[name] = [int(v) if _integral(v) else v for v in value]
        return out if out is not None else data


def _integral(value: object) -> bool:
    return type(value) is float and value.is_integer()


def _integer_kind(annotation: object) -> str | None:
    """The kind of integer a field takes: "int" (or null), "list" for a list of them, else None."""
    if annotation is int:
        return "int"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _integer_kind(args[0])
    if origin in (Union, UnionType):
        kinds = {_integer_kind(a) for a in args if a is not type(None)}
        return kinds.pop() if len(kinds) == 1 else None
    if origin is list and args and _integer_kind(args[0]) == "int":
        return "list"
    return None


@cache
def _integer_fields(model: type[BaseModel]) -> dict[str, str]:
    fields = {name: _integer_kind(info.annotation) for name, info in model.model_fields.items()}
    return {name: kind for name, kind in fields.items() if kind is not None}


class ErrorOut(BaseModel):
    error: str
    detail: str


# Every route documents the error shape it may answer with (one handler renders them all).
ERRORS: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "bad request"),
        (401, "missing, unknown or revoked token"),
        (403, "the token's role may not do this"),
        (404, "not there (or not in the token's projects)"),
        (409, "conflicts with the current state"),
        (413, "too large"),
        (422, "invalid input, naming the field"),
        (503, "a dependency is down; retry"),
    )
}


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: int | None = Field(None, description="pass as ?cursor= for the next page; null at the end")


def bbox_inside(bbox: list[float], width: int, height: int) -> bool:
    x1, y1, x2, y2 = bbox
    return x1 >= 0 and y1 >= 0 and x2 <= width and y2 <= height
