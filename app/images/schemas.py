from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from app.schemas import Strict

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class ImageIn(Strict):
    uri: str = Field(
        max_length=4096,
        description="a file:// path under a configured image root, or an http(s)://, s3://, gs:// or az:// "
        "URI under a configured URL prefix",
    )
    split: Literal["pool", "test"] = "pool"
    external_id: ExternalId | None = Field(None, description="your id for the image; default: the file stem")
    width: int | None = Field(None, ge=1, le=1_000_000, description="read from the file when not given")
    height: int | None = Field(None, ge=1, le=1_000_000)


class ImagesIn(Strict):
    images: list[ImageIn] | None = Field(None, min_length=1, description="the images, one by one")
    prefix: str | None = Field(
        None,
        max_length=4096,
        description="or every image file under a directory (file://) or a prefix (s3://, gs://, az://, or a "
        "web server's listing), registered in ``split`` with its file stem as external id",
    )
    split: Literal["pool", "test"] = Field("pool", description="with prefix: the split they join")
    existing: Literal["error", "skip"] = Field(
        "error",
        description="an image whose external_id is already registered: error (409 for the whole request, "
        "nothing registered) or skip (the others are registered; each skipped one is a line of skipped)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ImagesIn:
        if (self.images is None) == (self.prefix is None):
            raise ValueError("give either images or prefix")
        return self


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


class SkippedImage(BaseModel):
    item: str
    reason: str


class ImagesOut(BaseModel):
    images: list[ImagePublic]
    skipped: list[SkippedImage] = Field(
        default_factory=list,
        description="images not registered, and why: unreadable under a prefix, already registered (existing "
        "skip), links out of a listing's prefix",
    )
