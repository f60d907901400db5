"""ResNet-FPN backbones, ImageNet-initialised where torchvision can load the weights, else from scratch.

From scratch, the ResNet uses GroupNorm: torchvision's frozen BatchNorm is an identity until it is
loaded from pretrained statistics, and plain BatchNorm is unreliable at detection batch sizes.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights, resnet18, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from worker.engine.presets import Preset


class PretrainedWeightsUnavailable(RuntimeError):
    pass


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels)


def build_backbone(preset: Preset, *, pretrained: bool) -> BackboneWithFPN:
    if pretrained:
        weights = ResNet50_Weights.IMAGENET1K_V1 if preset.depth == 50 else ResNet18_Weights.IMAGENET1K_V1
        builder = resnet50 if preset.depth == 50 else resnet18
        try:
            body = builder(weights=weights, norm_layer=misc_nn_ops.FrozenBatchNorm2d)
        except Exception as exc:  # no network, no cached file, corrupt download
            raise PretrainedWeightsUnavailable(
                f"model preset {preset.name!r} needs ImageNet weights for its ResNet-{preset.depth} backbone "
                f"({weights.url}), which could not be loaded: {type(exc).__name__}: {exc}. Either place that "
                "file in $TORCH_HOME/hub/checkpoints, or set the project setting pretrained=false to train "
                "from scratch."
            ) from exc
        trainable = 3
    else:
        body = (resnet50 if preset.depth == 50 else resnet18)(weights=None, norm_layer=_group_norm)
        trainable = 5
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1", "bn1"][: trainable + (trainable == 5)]
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    stage2 = body.inplanes // 8
    in_channels = [stage2 * 2 ** (i - 1) for i in preset.returned_layers]
    extra: ExtraFPNBlock
    if preset.arch == "retinanet":
        extra = LastLevelP6P7(preset.fpn_channels, preset.fpn_channels)  # P6 from P5, as RetinaNet v2
    else:
        extra = LastLevelMaxPool()
    return BackboneWithFPN(
        body,
        {f"layer{k}": str(v) for v, k in enumerate(preset.returned_layers)},
        in_channels,
        preset.fpn_channels,
        extra_blocks=extra,
        norm_layer=None,
    )
