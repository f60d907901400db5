from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.schemas import Strict


class RoundPublic(BaseModel):
    round: int
    state: Literal["training", "scoring", "open", "closed", "failed"]
    job_id: str | None
    model_version: str | None
    boxes_obtained: int = Field(description="labeled pool boxes this round's model trained on")
    images_labeled: int = Field(description="pool images in its training set L_I")
    queries_answered: int = Field(description="answers (any action) received before this round started")
    seconds: float = Field(description="annotator seconds of those answers (sum of duration_ms)")
    metrics: dict[str, Any] | None = Field(description="test-split evaluation: map, map50, ...")
    pool: dict[str, Any] | None = Field(description="pool statistics after this round's ranking")
    notice: str | None = Field(
        None, description="why this box round serves image queries (too few box queries), and what to change"
    )
    warning: str | None = Field(
        None,
        description="its test mAP@0.5 fell by more than 20% from the previous round's: by how much, and what "
        "it trained on (noisy targets per image and their score floor)",
    )
    unit: str | None = Field(
        None, description="unit auto: the unit this round serves (box, image or review); null: the project's"
    )
    unit_choice: dict[str, Any] | None = Field(
        None,
        description="unit auto: the figures the unit was chosen on: reason, images and objects measured, "
        "recall, box_precision, review_precision, seconds_per_box per unit (app/rounds/unit.py)",
    )
    error: str | None = Field(description="why its job failed (a failed stage), else null")
    classes: list[str] | None = Field(
        None, description="the classes its model was trained on: the project's when it started"
    )
    created_at: datetime
    opened_at: datetime | None
    closed_at: datetime | None


class RoundStart(Strict):
    force: bool = Field(
        False,
        description="close the open round even though it has not received its round_size (answers or boxes, "
        "as round_budget says) while queries are left: without it that is a 409 saying how many to go",
    )


class RoundStarted(BaseModel):
    round: int
    job_id: str


class ClassPoint(BaseModel):
    class_: str = Field(alias="class", description="the class name")
    ap: float | None = Field(description="AP@[.5:.95] on the test split (pycocotools); null: no test box")
    ap50: float | None = Field(description="AP@0.5 on the test split; null: the class has no test box")
    labeled: int = Field(description="labeled boxes the round trained on")
    noisy: int = Field(description="noisy boxes (unanswered predictions) the round trained on")
    queued: int = Field(description="unanswered predicted boxes waiting in the pool")
    test_boxes: int = Field(description="ground-truth boxes of the test split")

    model_config = {"populate_by_name": True, "serialize_by_alias": True}


class CurvePoint(BaseModel):
    round: int
    boxes_obtained: int
    queries_answered: int
    seconds: float
    map: float | None
    map50: float | None
    model_version: str | None
    notice: str | None = Field(None, description="as the round's: why it served image queries")
    warning: str | None = Field(None, description="as the round's: its mAP@0.5 fell, and what it trained on")
    note: str | None = Field(None, description="why mAP is null, or which test images were not evaluated")
    unit: str | None = Field(None, description="unit auto: the unit the round served")
    unit_reason: str | None = Field(None, description="unit auto: why, with the figures it was chosen on")
    per_class: list[ClassPoint] | None = Field(None, description="per class: AP on the test split, counts")


class Curve(BaseModel):
    points: list[CurvePoint]
    next_cursor: int | None = None
