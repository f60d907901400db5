from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow

SPLITS = ("pool", "test")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_images_project_external_id"),
        Index("ix_images_project_file_name", "project_id", "file_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    split: Mapped[str] = mapped_column(String(8))
    external_id: Mapped[str] = mapped_column(String(255))
    file_name: Mapped[str] = mapped_column(String(512))
    path: Mapped[str] = mapped_column(String(4096))
    width: Mapped[int]
    height: Mapped[int]
    # In L_I with every object labeled: by an import of ground truth or an answered image query.
    fully_labeled: Mapped[bool] = mapped_column(default=False)
    labeled_event_id: Mapped[int | None]
    informativeness: Mapped[float | None]
    # the round whose model first predicted this image's boxes (pool policy "fixed" predicts once)
    predicted_round: Mapped[int | None]
    model_version: Mapped[str | None] = mapped_column(String(64))
    lease_query_id: Mapped[int | None]
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
