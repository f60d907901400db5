from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow

# training -> scoring -> open -> closed; failed is retryable (POST /rounds runs it again)
ROUND_STATES = ("training", "scoring", "open", "closed", "failed")


class Round(Base):
    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_rounds_project_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    number: Mapped[int]
    state: Mapped[str] = mapped_column(String(16))
    job_id: Mapped[str | None] = mapped_column(String(36))
    model_version: Mapped[str | None] = mapped_column(String(64))
    # training of this round's model sees every label event with id <= snapshot_event_id
    snapshot_event_id: Mapped[int | None]
    # the project's classes when the round was started: its model, scores and evaluation use these (None:
    # a round made before rounds kept them, which uses the project's)
    classes: Mapped[list[Any] | None]
    boxes_obtained: Mapped[int] = mapped_column(default=0)
    images_labeled: Mapped[int] = mapped_column(default=0)
    queries_answered: Mapped[int] = mapped_column(default=0)
    seconds: Mapped[float] = mapped_column(default=0.0)
    metrics: Mapped[dict[str, Any] | None]
    pool_stats: Mapped[dict[str, Any] | None]
    # unit auto: the unit this round serves and the figures it was chosen on (app/rounds/unit.py)
    unit: Mapped[str | None] = mapped_column(String(16))
    unit_choice: Mapped[dict[str, Any] | None]
    error: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    opened_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
