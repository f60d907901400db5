from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, utcnow


class LabelStudioLink(Base):
    """A Label Studio project served by a boxal project through the ML-backend protocol
    (app/label_studio/): which control of its label config draws the boxes and which task field holds
    the image."""

    __tablename__ = "label_studio_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Label Studio's project id (the protocol sends "<id>.<created_at timestamp>"; webhooks send the id)
    ls_project: Mapped[int] = mapped_column(unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), unique=True)
    from_name: Mapped[str] = mapped_column(String(200))  # the RectangleLabels control
    to_name: Mapped[str] = mapped_column(String(200))  # the Image object it labels
    value: Mapped[str] = mapped_column(String(200))  # the task data field holding the image URL
    # the model version Label Studio's project was last moved to (app/label_studio/sync.py)
    synced_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
