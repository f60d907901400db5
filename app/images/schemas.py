from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas import Strict

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class ImageIn(Strict):
    uri: str = Field(max_length=4096, description="file:// path under a configured image root")
    split: Literal["pool", "test"] = "pool"
    external_id: ExternalId | None = Field(None, description="your id for the image; default: the file stem")
    width: int | None = Field(None, ge=1, le=1_000_000, description="read from the file when not given")
    height: int | None = Field(None, ge=1, le=1_000_000)


class ImagesIn(Strict):
    images: list[ImageIn] = Field(min_length=1)


class BoxPublic(BaseModel):
    id: int
    bbox: list[float]
    label: str
    source: str
    status: str
    score: float | None
    probs: list[float] | None
    informativeness: float | None
    model_version: str | None
    predicted: dict | None = Field(description="the model's box and label before an annotator changed them")
    round_queried: int | None
    round_answered: int | None


class ImagePublic(BaseModel):
    id: int
    external_id: str
    file_name: str
    split: str
    width: int
    height: int
    url: str
    fully_labeled: bool
    informativeness: float | None
    created_at: datetime


class ImageDetail(ImagePublic):
    boxes: list[BoxPublic]


class ImagesOut(BaseModel):
    images: list[ImagePublic]
