"""API types shared by every domain: boxes, errors, pages."""

from __future__ import annotations

import math
from typing import Annotated, Generic, TypeVar

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
    says (no ``false`` for an integer, no ``"3"`` for a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


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
