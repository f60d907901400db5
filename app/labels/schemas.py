from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints, model_validator

from app.schemas import MAX_ID, BBox, Strict

ClassName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
BOX_ACTIONS = ("accept", "adjust", "background", "duplicate")


class DrawnBox(Strict):
    bbox: BBox
    label: ClassName


class LabelIn(Strict):
    query_id: int = Field(ge=1, le=MAX_ID)
    action: Literal["accept", "adjust", "background", "duplicate", "label_all"] = Field(
        description="box queries: accept (as predicted), adjust (bbox and label), background, duplicate; "
        "image queries: label_all (boxes: every object on the image, possibly none)"
    )
    bbox: BBox | None = Field(
        None, description="adjust only: [x1, y1, x2, y2] in pixels, x1 < x2 and y1 < y2, inside the image"
    )
    label: ClassName | None = Field(None, description="adjust only: one of the project's classes")
    boxes: list[DrawnBox] | None = Field(None, max_length=10_000)
    duration_ms: int | None = Field(None, ge=0, le=24 * 3600 * 1000, description="time the annotator spent")

    @model_validator(mode="after")
    def _fields_fit_action(self) -> LabelIn:
        if self.action == "adjust":
            if self.bbox is None or self.label is None:
                raise ValueError("adjust needs bbox and label")
        elif self.action == "label_all":
            if self.boxes is None:
                raise ValueError("label_all needs boxes (an empty list if the image has no objects)")
            if self.bbox is not None or self.label is not None:
                raise ValueError("label_all takes boxes, not bbox/label")
        else:
            if self.bbox is not None or self.label is not None:
                raise ValueError(f"{self.action} takes no bbox or label; use adjust to change the box")
        if self.action != "label_all" and self.boxes is not None:
            raise ValueError(f"{self.action} takes no boxes; boxes belong to label_all on image queries")
        return self

    def fingerprint(self) -> dict:
        """What makes two answers the same answer (duration is not part of it)."""
        return {
            "action": self.action,
            "bbox": self.bbox,
            "label": self.label,
            "boxes": [[*b.bbox, b.label] for b in self.boxes] if self.boxes is not None else None,
        }


class LabelsIn(Strict):
    labels: list[LabelIn] = Field(min_length=1, max_length=1000)


class LabelResult(BaseModel):
    query_id: int
    status: Literal["recorded", "already_recorded"]
    event_id: int
    box_ids: list[int] = Field(description="boxes this answer labeled or created")
    resolved_box_ids: list[int] = Field(description="other boxes it resolved (duplicates, image leftovers)")


class LabelsOut(BaseModel):
    labels: list[LabelResult]
    round: int = Field(description="the latest round; higher than before if this batch started one")
    round_started: bool = False


class LabelEventPublic(BaseModel):
    id: int
    kind: str
    query_id: int | None
    box_id: int | None
    image_id: int
    annotator: str
    action: str
    before: dict | None
    after: dict | None
    duration_ms: int | None
    round: int
    created_at: datetime
