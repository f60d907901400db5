"""boxal's CPU-sized presets inside Detectron2: the same FPN backbone (backbone.py, ImageNet MobileNetV2 from
the weights extra where the preset is pretrained) registered as a Detectron2 backbone, under a config
with the preset's anchors, proposal counts, RoI sample size, box head width and input normalisation.

So ``backend: detectron2`` with a lite preset trains the same network as ``backend: torchvision`` would,
through Detectron2's RPN, RoI heads or RetinaNet head, matcher, sampler and losses: the side-by-side that
tells the engines apart.
"""

from __future__ import annotations

from detectron2.config import CfgNode
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, ShapeSpec
from torch import Tensor

from worker.engine.backbone import MOBILENET_TAPS, build_backbone
from worker.engine.presets import Preset, get_preset
from worker.engine.retinanet import octave_sizes
from worker.engine.weights import resolve

IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def _strides(preset: Preset) -> list[int]:
    if preset.backbone == "mobilenet_v2":
        taps = [8, 16, 32][: len(MOBILENET_TAPS)]
    else:
        taps = [2 ** (layer + 1) for layer in preset.returned_layers]
    extra = [taps[-1] * 2, taps[-1] * 4] if preset.arch == "retinanet" else [taps[-1] * 2]
    return taps + extra


def _names(strides: list[int]) -> list[str]:
    """Detectron2's feature names: p3 for stride 8."""
    return [f"p{s.bit_length() - 1}" for s in strides]


class LiteBackbone(Backbone):  # type: ignore[misc]
    """backbone.py's FPN, its outputs named by stride as Detectron2's are (p3 = stride 8)."""

    def __init__(self, preset: Preset, frozen_bn: bool, imagenet: bool) -> None:
        super().__init__()
        body = resolve(preset, "imagenet").body if imagenet else None
        self.fpn = build_backbone(preset, frozen_bn=frozen_bn, body_state=body)
        self.strides = _strides(preset)
        self.names = _names(self.strides)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.names, self.fpn(x).values(), strict=True))

    def output_shape(self) -> dict[str, ShapeSpec]:
        return {
            n: ShapeSpec(channels=self.fpn.out_channels, stride=s)
            for n, s in zip(self.names, self.strides, strict=True)
        }

    @property
    def size_divisibility(self) -> int:
        return 32


@BACKBONE_REGISTRY.register()
def build_lite_backbone(cfg: CfgNode, input_shape: ShapeSpec) -> LiteBackbone:
    boxal = cfg.MODEL.BOXAL
    return LiteBackbone(get_preset(boxal.PRESET), boxal.FROZEN_BN, boxal.IMAGENET)


def is_lite(preset: Preset) -> bool:
    return preset.name.endswith("_lite")


def adapt(cfg: CfgNode, preset: Preset, *, frozen_bn: bool, imagenet: bool) -> None:
    """Point a Base-RCNN-FPN or Base-RetinaNet config at the preset's network: FrozenBatchNorm (pretrained
    layout) or GroupNorm, ImageNet weights loaded into it or not."""
    cfg.MODEL.BOXAL = CfgNode({"PRESET": preset.name, "FROZEN_BN": frozen_bn, "IMAGENET": imagenet})
    cfg.MODEL.BACKBONE.NAME = "build_lite_backbone"
    cfg.INPUT.FORMAT = "RGB"  # torchvision's normalisation, on 0-255 pixels
    cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD = IMAGENET_MEAN, IMAGENET_STD
    names = _names(_strides(preset))
    if preset.arch == "retinanet":
        cfg.MODEL.RETINANET.IN_FEATURES = names
        cfg.MODEL.RETINANET.NUM_CONVS = preset.retinanet_convs
        cfg.MODEL.ANCHOR_GENERATOR.SIZES = [list(octave_sizes(s)) for s in preset.anchor_sizes[: len(names)]]
        cfg.TEST.DETECTIONS_PER_IMAGE = preset.detections_per_img
        return
    cfg.MODEL.ANCHOR_GENERATOR.SIZES = [[s] for s in preset.anchor_sizes[: len(names)]]
    cfg.MODEL.RPN.IN_FEATURES = names
    cfg.MODEL.RPN.BATCH_SIZE_PER_IMAGE = preset.rpn_batch_size_per_image
    cfg.MODEL.RPN.PRE_NMS_TOPK_TRAIN = preset.rpn_pre_nms_top_n["training"]
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = preset.rpn_pre_nms_top_n["testing"]
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = preset.rpn_post_nms_top_n["training"]
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = preset.rpn_post_nms_top_n["testing"]
    cfg.MODEL.ROI_HEADS.IN_FEATURES = names[:-1]  # the pooled level proposes, as torchvision's does
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = preset.box_batch_size_per_image
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = preset.representation_size
    cfg.TEST.DETECTIONS_PER_IMAGE = preset.detections_per_img
