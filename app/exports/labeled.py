"""The labeled boxes of a project's images, image by image: what the COCO, VOC and YOLO exports write."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Box, Image, Project

CHUNK = 1000
SAFE_STEM = re.compile(r"[\w.-]{1,200}")


@dataclass(frozen=True)
class LabeledImage:
    image: Image
    boxes: list[Box]  # its labeled boxes

    @property
    def complete(self) -> bool:
        """Every object of the image is labeled: what is not boxed is background."""
        return self.image.fully_labeled

    @property
    def stem(self) -> str:
        """The image's file stem in an export: its external id where that is a safe file name, else its
        id (the importer matches either back)."""
        external = self.image.external_id
        return (
            external if SAFE_STEM.fullmatch(external) and external not in (".", "..") else str(self.image.id)
        )


def labeled_images(
    session: Session, project: Project, *, split: str | None, complete_only: bool
) -> Iterator[LabeledImage]:
    """Images holding labels, by id: fully labeled ones (with or without boxes) and, unless
    ``complete_only``, partly labeled ones (answered box queries), each with its labeled boxes."""
    stmt = select(Image).where(Image.project_id == project.id).order_by(Image.id)
    if split:
        stmt = stmt.where(Image.split == split)
    if complete_only:
        stmt = stmt.where(Image.fully_labeled)
    else:
        with_labels = select(Box.image_id).where(Box.project_id == project.id, Box.status == "labeled")
        stmt = stmt.where(Image.fully_labeled | Image.id.in_(with_labels))
    images = list(session.scalars(stmt))
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK]
        by_image: dict[int, list[Box]] = {image.id: [] for image in chunk}
        boxes = select(Box).where(Box.image_id.in_(list(by_image)), Box.status == "labeled").order_by(Box.id)
        for box in session.scalars(boxes):
            by_image[box.image_id].append(box)
        for image in chunk:
            yield LabeledImage(image, by_image[image.id])
