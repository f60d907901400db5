"""Project settings (every one documented and validated) and the project resource's shapes."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from app.schemas import Strict
from worker import acquisition  # numpy only: the one thing the API takes from the worker package

# Built by name by the detection engine (worker/engine/presets.py checks that it knows exactly these).
MODEL_PRESETS = (
    "faster_rcnn_r50_fpn",
    "retinanet_r50_fpn",
    "faster_rcnn_r18_fpn_lite",
    "retinanet_r18_fpn_lite",
)
if TYPE_CHECKING:
    StrategyName = str
else:  # the registry's names, as an enum in the OpenAPI schema
    StrategyName = Literal[acquisition.names()]

ClassName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class ProjectSettings(BaseModel):
    """How a project queries, trains and serves. Defaults follow the paper where it gives one."""

    model_config = ConfigDict(extra="forbid")

    unit: Literal["box", "image"] = Field(
        "box", description="what one query asks for: a box or a whole image"
    )
    strategy: StrategyName = Field(
        "least_confidence",
        description="informativeness measure used to rank the pool: "
        + "; ".join(f"{name}: {cls.description}" for name, cls in acquisition.REGISTRY.items()),
    )
    reduction: Literal["mean", "max", "sum"] = Field(
        "mean", description="how box scores become an image score (image unit)"
    )
    k: int = Field(10, ge=1, le=1000, description="queries leased per call when the request names no k")
    round_size: int = Field(
        100,
        ge=1,
        le=1_000_000,
        description="what closes a round and starts retraining (the paper's K), counted as round_budget says",
    )
    round_budget: Literal["answers", "boxes"] = Field(
        "answers",
        description="answers: a box round closes after round_size answers; boxes: after round_size boxes "
        "obtained (adjusted or accepted answers; background and duplicate answers are free, as in Lyu et "
        "al., CVPR 2023). Image rounds count answers.",
    )
    t_d: float = Field(0.05, gt=0, lt=1, description="detection threshold for pool predictions (low: recall)")
    lambda_d: float = Field(0.5, ge=0, le=1, description="dampening weight of noisy boxes (paper: 0.5)")
    noisy: Literal["dampen", "drop", "full"] = Field(
        "dampen",
        description="unlabeled predicted boxes on training images: dampened targets, dropped, or full labels",
    )
    loss_reading: Literal["anchor_weights", "group_means"] = Field(
        "anchor_weights",
        description="how Eq. 3 weighs noisy boxes. anchor_weights: each anchor matched to a noisy box has "
        "its loss times lambda_d, every term normalised as the stock torchvision term (DESIGN.md); "
        "group_means: the literal reading, the mean over labeled anchors plus lambda_d times the mean "
        "over noisy anchors (one noisy anchor can then weigh as much as all labeled ones)",
    )
    training_images: Literal["answered", "labeled"] = Field(
        "answered",
        description="which pool images train besides fully labeled ones. answered: every image with an "
        "answered box, background answers included, which train as negatives (the paper, Sec. 3); "
        "labeled: only images with an adjusted or accepted box (boxal before this setting)",
    )
    noisy_targets: Literal["frozen", "refreshed"] = Field(
        "frozen",
        description="frozen: noisy boxes are the first model's predictions, as the paper has them; "
        "refreshed (beyond the paper): before each round's training the current model predicts the "
        "training images again; noisy boxes overlapping an answered box are dropped, one class per object "
        "is kept, and predictions below refresh_confidence become ignore regions",
    )
    refresh_confidence: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="refreshed noisy targets: a prediction scoring at least this is a noisy target; one "
        "between t_d and this is an ignore region (trains as neither object nor background)",
    )
    model: str = Field("faster_rcnn_r18_fpn_lite", description=f"detector preset: one of {MODEL_PRESETS}")
    pretrained: bool | None = Field(
        None, description="ImageNet backbone; null: the preset's default (paper presets true, lite false)"
    )
    min_size: int | None = Field(
        None, ge=32, le=4096, description="shorter image side for the model; null: preset's"
    )
    max_size: int | None = Field(None, ge=32, le=8192, description="longer side cap; null: the preset's")
    epochs: int | None = Field(None, ge=1, le=1000, description="null: the preset's schedule")
    lr: float | None = Field(None, gt=0, le=10, description="null: the preset's schedule")
    batch_size: int | None = Field(None, ge=1, le=256, description="null: the preset's schedule")
    initial_model: str | None = Field(
        None,
        max_length=64,
        pattern=r"^[\w.-]+$",
        description="round 1 uses this existing model version instead of training one (experiments share "
        "one initial model across arms, as the paper does); it must have been trained on the same initial "
        "labeled set and classes",
    )
    warm_start: bool = Field(
        False, description="start each round's training from the previous round's model (paper: off)"
    )
    pool_policy: Literal["fixed", "refresh"] = Field(
        "fixed", description="fixed: U_B from the first model (paper); refresh: re-predict every round"
    )
    seed_images: int = Field(
        0, ge=0, le=1_000_000, description="random image queries served before the first round"
    )
    suppress_duplicates_iou: float | None = Field(
        None, gt=0, le=1, description="resolve unlabeled boxes overlapping a labeled one at this IoU (off)"
    )
    lease_ttl_s: int = Field(600, ge=5, le=7 * 24 * 3600, description="a lease not answered by then expires")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed: random strategy, training, seeding")

    @field_validator("model")
    @classmethod
    def _known_model(cls, value: str) -> str:
        if value not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {value!r}; choose one of {', '.join(MODEL_PRESETS)}")
        return value

    @model_validator(mode="after")
    def _box_features_need_faster_rcnn(self) -> ProjectSettings:
        strategy = acquisition.REGISTRY[self.strategy]
        if strategy.needs_box_features and self.unit == "box" and self.model.startswith("retinanet"):
            raise ValueError(
                f"box-level {self.strategy} needs box features, which RetinaNet does not have (the paper "
                "omits it too): use a faster_rcnn_* model, or the image unit"
            )
        return self


class ProjectCreate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    classes: list[ClassName] = Field(min_length=1, max_length=1000)
    settings: ProjectSettings = Field(default_factory=ProjectSettings)

    @model_validator(mode="after")
    def _unique_classes(self) -> ProjectCreate:
        seen: set[str] = set()
        for name in self.classes:
            if name in seen:
                raise ValueError(f"class {name!r} is listed twice")
            seen.add(name)
        return self


class ProjectUpdate(Strict):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None
    settings: dict[str, Any] | None = Field(
        None, description="settings to change; the others keep their values"
    )
    add_classes: list[ClassName] | None = Field(
        None, description="classes appended to the list (never removed)"
    )


class ProjectPublic(BaseModel):
    id: int
    name: str
    classes: list[str]
    settings: ProjectSettings
    round: int = Field(description="number of the latest round")
    serving_round: int = Field(description="round whose ranking the pool is served from")
    answers_this_round: int = Field(description="answers since the latest round began (round_size closes it)")
    created_at: datetime
