from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas import Strict

Annotator = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class LeaseIn(Strict):
    k: int | None = Field(None, ge=1, description="how many queries; default: the project's k setting")
    annotator: Annotator = Field(description="who will answer; every answer is logged under this name")
    unit: Literal["box", "image", "review"] | None = Field(None, description="default: the project's unit")


class QueryImage(BaseModel):
    id: int
    external_id: str
    url: str
    width: int
    height: int


class Hint(BaseModel):
    box_id: int | None = Field(None, description="the predicted box (review: name it in the answer)")
    bbox: list[float]
    label: str
    score: float | None


class QueryOut(BaseModel):
    query_id: int
    unit: Literal["box", "image", "review"]
    box_id: int | None = None
    image_id: int
    image: QueryImage
    bbox: list[float] | None = Field(None, description="box unit: the candidate box")
    label: str | None = Field(None, description="box unit: the predicted class")
    score: float | None = None
    informativeness: float | None = None
    round: int
    expires_at: datetime
    predictions: list[Hint] | None = Field(
        None,
        description="image unit: the model's boxes on the image; review: those to review (score at least "
        "review_min_score), each to be accepted, fixed or deleted in the answer",
    )


class LeaseOut(BaseModel):
    queries: list[QueryOut]
    reason: str | None = Field(
        None, description="when queries is empty: why (nothing registered, everything labeled or leased)"
    )
