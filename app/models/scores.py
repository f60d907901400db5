from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class BoxScore(Base):
    """A box's informativeness under one round's model: staged while the round scores, then the served
    ranking itself once the round opens (leases walk ``ix_box_scores_queue``, migration 0004), so that
    switching rankings is one row (``projects.serving_round``) however large the pool."""

    __tablename__ = "box_scores"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    box_id: Mapped[int] = mapped_column(ForeignKey("boxes.id", ondelete="CASCADE"), primary_key=True)
    informativeness: Mapped[float]


class ImageScore(Base):
    __tablename__ = "image_scores"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True)
    informativeness: Mapped[float]


class Shard(Base):
    """One slice of a round's pool work; the last shard to finish hands the round to the next step."""

    __tablename__ = "shards"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id", ondelete="CASCADE"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    index: Mapped[int] = mapped_column(primary_key=True)
    total: Mapped[int]
    done: Mapped[bool] = mapped_column(default=False)
    worker: Mapped[str | None] = mapped_column(String(255))
