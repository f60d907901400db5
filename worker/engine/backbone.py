"""FPN backbones on ResNet-18/50 or MobileNetV2, from ImageNet weights or from scratch.

With pretrained weights the network uses FrozenBatchNorm2d, as torchvision's detectors do; from scratch
it uses GroupNorm: torchvision's frozen BatchNorm is an identity until it is loaded from pretrained
statistics, and plain BatchNorm is unreliable at detection batch sizes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.models import mobilenet_v2, resnet18, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from worker.engine.presets import Preset
from worker.engine.weights import load_checked

# MobileNetV2: the last block before each stride change (strides 8, 16, 32), and which blocks train
MOBILENET_TAPS = {"6": 32, "13": 96, "18": 1280}
MOBILENET_FROZEN_BLOCKS = 4  # the stem and the stride-2/4 blocks keep their ImageNet weights
RESNET_TRAINABLE = ("layer4", "layer3", "layer2")


def _norm(frozen: bool, groups: int) -> Callable[[int], nn.Module]:
    if frozen:
        return misc_nn_ops.FrozenBatchNorm2d
    return lambda channels: nn.GroupNorm(groups, channels)


def build_backbone(
    preset: Preset, *, frozen_bn: bool, body_state: dict[str, Tensor] | None
) -> BackboneWithFPN:
    """The preset's FPN backbone; ``body_state``: weights for its network (torchvision's names), loaded
    and checked tensor by tensor; ``frozen_bn``: FrozenBatchNorm2d (pretrained) rather than GroupNorm."""
    extra: ExtraFPNBlock
    if preset.arch == "retinanet":
        extra = LastLevelP6P7(preset.fpn_channels, preset.fpn_channels)  # P6 from P5, as RetinaNet v2
    else:
        extra = LastLevelMaxPool()
    if preset.backbone == "mobilenet_v2":
        return _mobilenet_fpn(preset, frozen_bn, body_state, extra)
    return _resnet_fpn(preset, frozen_bn, body_state, extra)


def _resnet_fpn(
    preset: Preset, frozen: bool, state: dict[str, Tensor] | None, extra: ExtraFPNBlock
) -> BackboneWithFPN:
    builder = resnet50 if preset.backbone == "resnet50" else resnet18
    body = builder(weights=None, norm_layer=_norm(frozen, 32))
    if state is not None:
        load_checked(body, state, what=f"{preset.backbone} backbone", ignore=("fc.",))
    trainable = RESNET_TRAINABLE if frozen else (*RESNET_TRAINABLE, "layer1", "conv1", "bn1")
    for name, parameter in body.named_parameters():
        if not name.startswith(trainable):
            parameter.requires_grad_(False)
    stage2 = body.inplanes // 8
    in_channels = [stage2 * 2 ** (i - 1) for i in preset.returned_layers]
    return BackboneWithFPN(
        body,
        {f"layer{k}": str(v) for v, k in enumerate(preset.returned_layers)},
        in_channels,
        preset.fpn_channels,
        extra_blocks=extra,
        norm_layer=None,
    )


def _mobilenet_fpn(
    preset: Preset, frozen: bool, state: dict[str, Tensor] | None, extra: ExtraFPNBlock
) -> BackboneWithFPN:
    features = mobilenet_v2(weights=None, norm_layer=_norm(frozen, 8)).features
    if state is not None:
        load_checked(features, _features_only(state), what="mobilenet_v2 backbone")
    if frozen:
        for block in features[:MOBILENET_FROZEN_BLOCKS]:
            block.requires_grad_(False)
    return BackboneWithFPN(
        features,
        {index: str(level) for level, index in enumerate(MOBILENET_TAPS)},
        list(MOBILENET_TAPS.values()),
        preset.fpn_channels,
        extra_blocks=extra,
        norm_layer=None,
    )


def _features_only(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A MobileNetV2 state_dict as its ``features`` sees it (a whole network's: prefix off, classifier
    dropped)."""
    if any(key.startswith("features.") for key in state):
        return {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    return state
