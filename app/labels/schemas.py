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


class ReviewedBox(Strict):
    box_id: int = Field(ge=1, le=MAX_ID, description="one of the review query's predictions")
    action: Literal["accept", "adjust", "background"] = Field(
        description="accept: it fits its object as drawn; adjust: fixed to bbox and label; background: "
        "deleted, no object there (or a second box on one)"
    )
    bbox: BBox | None = Field(None, description="adjust only")
    label: ClassName | None = Field(None, description="adjust only: one of the project's classes")

    @model_validator(mode="after")
    def _fields_fit_action(self) -> ReviewedBox:
        if (self.action == "adjust") != (self.bbox is not None and self.label is not None):
            raise ValueError("adjust needs bbox and label; accept and background take neither")
        if self.action != "adjust" and (self.bbox is not None or self.label is not None):
            raise ValueError(f"{self.action} takes no bbox or label")
        return self


class LabelIn(Strict):
    query_id: int = Field(ge=1, le=MAX_ID)
    action: Literal["accept", "adjust", "background", "duplicate", "label_all", "review"] = Field(
        description="box queries: accept (as predicted), adjust (bbox and label), background, duplicate; "
        "image queries: label_all (boxes: every object on the image, possibly none); review queries: "
        "review (reviewed: each drawn prediction accepted, adjusted or deleted; boxes: the objects it "
        "missed, possibly none)"
    )
    bbox: BBox | None = Field(
        None, description="adjust only: [x1, y1, x2, y2] in pixels, x1 < x2 and y1 < y2, inside the image"
    )
    label: ClassName | None = Field(None, description="adjust only: one of the project's classes")
    boxes: list[DrawnBox] | None = Field(None, max_length=10_000)
    reviewed: list[ReviewedBox] | None = Field(
        None, max_length=10_000, description="review only: a verdict on each prediction drawn"
    )
    duration_ms: int | None = Field(None, ge=0, le=24 * 3600 * 1000, description="time the annotator spent")
    correct: bool = Field(
        False,
        description="replace this query's earlier answer (by the annotator who gave it, or an admin): the "
        "box, the image and the next round's training follow the new answer; the event log keeps both, the "
        "new one a correction naming the event it supersedes. Without it a different second answer is 409",
    )

    @model_validator(mode="after")
    def _fields_fit_action(self) -> LabelIn:
        if self.action == "adjust":
            if self.bbox is None or self.label is None:
                raise ValueError("adjust needs bbox and label")
        elif self.action in ("label_all", "review"):
            if self.boxes is None:
                raise ValueError(f"{self.action} needs boxes (an empty list if nothing is missing)")
            if self.bbox is not None or self.label is not None:
                raise ValueError(f"{self.action} takes boxes, not bbox/label")
        else:
            if self.bbox is not None or self.label is not None:
                raise ValueError(f"{self.action} takes no bbox or label; use adjust to change the box")
        if self.action not in ("label_all", "review") and self.boxes is not None:
            raise ValueError(f"{self.action} takes no boxes; boxes belong to label_all and review")
        if (self.action == "review") != (self.reviewed is not None):
            raise ValueError("review needs reviewed (a verdict per prediction drawn); only review takes it")
        if self.reviewed is not None and len({r.box_id for r in self.reviewed}) != len(self.reviewed):
            raise ValueError("reviewed names a box twice")
        return self

    def fingerprint(self) -> dict:
        """What makes two answers the same answer (duration is not part of it)."""
        return {
            "action": self.action,
            "bbox": self.bbox,
            "label": self.label,
            "boxes": [[*b.bbox, b.label] for b in self.boxes] if self.boxes is not None else None,
            "reviewed": [r.model_dump() for r in self.reviewed] if self.reviewed is not None else None,
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
