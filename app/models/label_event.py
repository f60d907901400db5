from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class LabelEvent(Base):
    """Append-only log of every answer and every box state it changed; rows are never updated.

    ``kind`` is ``answer`` for what an annotator sent, ``derived`` for a box resolved as a consequence
    (duplicates suppressed by IoU, predicted boxes answered by a whole-image label).
    """

    __tablename__ = "label_events"
    __table_args__ = (Index("ix_label_events_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    query_id: Mapped[int | None]
    box_id: Mapped[int | None]
    image_id: Mapped[int]
    annotator: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]
    duration_ms: Mapped[int | None]
    round: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
