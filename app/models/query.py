from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow

UNITS = ("box", "image")
QUERY_STATES = ("leased", "answered", "released")


class Query(Base):
    """One lease of one box or image to one annotator, and (once answered) the answer's fingerprint."""

    __tablename__ = "queries"
    __table_args__ = (Index("ix_queries_project_state", "project_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    unit: Mapped[str] = mapped_column(String(8))
    box_id: Mapped[int | None] = mapped_column(ForeignKey("boxes.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(200))
    round: Mapped[int]
    state: Mapped[str] = mapped_column(String(16), default="leased")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    answer: Mapped[dict[str, Any] | None]
    answer_event_id: Mapped[int | None]
