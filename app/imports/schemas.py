from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from app.schemas import Strict

# an absolute path, a file:// URI of one, or a prefix on object storage or a web server
ABSOLUTE = r"^(/|file:///|(https?|s3|gs|gcs|az|abfs|abfss)://)"


class CocoImport(Strict):
    format: Literal["coco"]
    kind: Literal["annotations", "predictions"] = Field(
        "annotations",
        description="annotations: ground truth (pool images become fully labeled, test images get their "
        "evaluation truth); predictions: results with score that enter the pool as unlabeled boxes",
    )
    data: dict[str, Any] = Field(
        description="a COCO dict: images, categories (both required), annotations, each annotation naming an "
        "image and a category the dict defines"
    )
    model_version: str | None = Field(None, max_length=64, description="names the model behind predictions")


class VocImport(Strict):
    format: Literal["voc"]
    path: str = Field(
        max_length=4096,
        pattern=ABSOLUTE,
        description="a VOC directory (Annotations/, JPEGImages/) under an image root, or such a prefix on "
        "object storage (s3://bucket/voc/) under an allowed URL prefix",
    )
    image_set: str | None = Field(
        None, max_length=100, pattern=r"^[\w.-]+$", description="read ImageSets/Main/<image_set>.txt only"
    )
    ids: list[str] | None = Field(None, description="only these file stems")
    register_split: Literal["pool", "test"] | None = Field(
        None, description="also register the directory's images that are not registered yet, in this split"
    )


class YoloImport(Strict):
    format: Literal["yolo"]
    path: str = Field(
        max_length=4096,
        pattern=ABSOLUTE,
        description="an Ultralytics YOLO directory (data.yaml, <subset>/images, <subset>/labels) under an "
        "image root, or such a prefix on object storage under an allowed URL prefix",
    )
    subsets: list[Annotated[str, StringConstraints(pattern=r"^[\w.-]+$", max_length=100)]] | None = Field(
        None, description="subset folders to read (e.g. train, valid); default: every one"
    )
    ids: list[str] | None = Field(None, description="only these file stems")
    register_split: Literal["pool", "test"] | None = Field(
        None, description="also register the directory's images that are not registered yet, in this split"
    )


ImportIn = Annotated[CocoImport | VocImport | YoloImport, Field(discriminator="format")]


class SkippedItem(BaseModel):
    item: str
    reason: str


class ImportReport(BaseModel):
    format: str
    kind: str
    images_matched: int = 0
    images_registered: int = 0
    images_labeled: int = Field(0, description="pool images that joined the labeled set L_I")
    test_images: int = Field(0, description="test images that received evaluation ground truth")
    boxes_imported: int = 0
    boxes_clipped: int = Field(0, description="boxes partly outside their image, clipped to it")
    skipped_count: int = 0
    skipped_by_reason: dict[str, int] = Field(default_factory=dict)
    skipped: list[SkippedItem] = Field(default_factory=list, description="the first 100 skipped items")
