from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow

SOURCES = ("ground_truth", "predicted", "annotator")
STATUSES = ("unlabeled", "labeled", "background", "duplicate")


class Box(Base):
    """A rectangle on an image, ``[x1, y1, x2, y2]`` in absolute pixels; ``label`` indexes project.classes."""

    __tablename__ = "boxes"
    __table_args__ = (
        Index("ix_boxes_image_id", "image_id"),
        Index("ix_boxes_project_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    x1: Mapped[float]
    y1: Mapped[float]
    x2: Mapped[float]
    y2: Mapped[float]
    label: Mapped[int]
    score: Mapped[float | None]
    probs: Mapped[list[Any] | None]
    # what the model predicted, kept when an annotator changes the box (None: never changed)
    predicted: Mapped[dict[str, Any] | None]
    informativeness: Mapped[float | None]
    model_version: Mapped[str | None] = mapped_column(String(64))
    round_predicted: Mapped[int | None]
    round_queried: Mapped[int | None]
    round_answered: Mapped[int | None]
    answer_event_id: Mapped[int | None]
    lease_query_id: Mapped[int | None]
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @property
    def bbox(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]
