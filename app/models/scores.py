from __future__ import annotations

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class BoxScore(Base):
    """A box's informativeness under one round's model, staged until the round's ranking applies it."""

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
