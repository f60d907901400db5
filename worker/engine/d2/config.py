"""Which Detectron2 config a project's detector is built from, and how boxal adapts it.

A config is a model-zoo name (``COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml``, relative to the configs
Detectron2 ships) or a YAML file a user names by absolute path. Only YAML: a LazyConfig (``.py``) runs
code. boxal keeps the config's network and losses' settings, and sets:

- the number of classes, the device (the training loop moves the model) and no weights (weights.py);
- the dampened heads in place of the stock ones (``dampened=False`` keeps the stock ones, for tests);
- no mask or keypoint heads: boxal labels boxes;
- from scratch, no frozen backbone stages (the config's ``FREEZE_AT`` assumes ImageNet weights), and
  GroupNorm in a ResNet configured with FrozenBN (frozen statistics of weights it does not start from
  would leave it unnormalised; Detectron2's own from-scratch configs use GroupNorm).

Image size and schedule come from the project's model preset and settings, as for the torchvision
backend, not from the config's ``INPUT`` and ``SOLVER``. Without a config, a ``*_lite`` preset gets
Detectron2's base config around its own network (lite.py), any other the zoo's R-50 FPN config.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

import detectron2
import yaml
from detectron2.config import CfgNode, get_cfg

from worker.engine.d2 import lite
from worker.engine.presets import Preset

ZOO = Path(detectron2.__file__).resolve().parent / "model_zoo" / "configs"
DEFAULT_CONFIGS = {
    "faster_rcnn": "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml",
    "retinanet": "COCO-Detection/retinanet_R_50_FPN_1x.yaml",
}
ARCHITECTURES = {"GeneralizedRCNN": "faster_rcnn", "RetinaNet": "retinanet"}
LITE_BASES = {"faster_rcnn": "Base-RCNN-FPN.yaml", "retinanet": "Base-RetinaNet.yaml"}


def config_path(name: str) -> Path:
    """The YAML file a config name means: a model-zoo name, or an absolute path or file:// URI."""
    if name.startswith(("/", "file://")):
        path = Path(unquote(urlparse(name).path) if name.startswith("file://") else name)
    else:
        if ".." in PurePosixPath(name).parts:
            raise ValueError(f"detectron2 config {name!r}: a model-zoo name may not leave the zoo")
        path = ZOO / name
    if path.suffix not in (".yaml", ".yml"):
        raise ValueError(f"detectron2 config {name!r}: only YAML configs (a LazyConfig .py runs code)")
    if not path.is_file():
        raise ValueError(
            f"detectron2 config {name!r}: no such file ({path}); model-zoo names are relative to "
            f"Detectron2's configs, for example {DEFAULT_CONFIGS['faster_rcnn']}"
        )
    _plain_yaml(path)
    return path


def _plain_yaml(path: Path) -> None:
    """A user's config, and each ``_BASE_`` it names outside the model zoo, must be plain YAML: Detectron2
    falls back to ``yaml.unsafe_load`` (which runs ``!!python`` tags) when plain loading fails. The zoo's
    own files are trusted (its RetinaNet base computes anchor sizes with such a tag)."""
    resolved = path.resolve()
    if resolved.is_relative_to(ZOO):
        return
    try:
        content = yaml.safe_load(resolved.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(
            f"detectron2 config {path}: not plain YAML ({str(exc).splitlines()[0]}); boxal reads a config of "
            "yours only as data, never with tags that run code"
        ) from None
    base = content.get("_BASE_") if isinstance(content, dict) else None
    if isinstance(base, str):
        _plain_yaml(Path(base) if base.startswith("/") else resolved.parent / base)


def make_cfg(
    preset: Preset,
    name: str | None,
    num_classes: int,
    *,
    from_scratch: bool,
    imagenet: bool = False,
    dampened: bool = True,
) -> CfgNode:
    """The config of a ``num_classes`` detector of ``preset``'s architecture. ``name`` None: the zoo's
    R-50 FPN config, or for a lite preset Detectron2's base config around the preset's own network
    (lite.py; ``imagenet``: its backbone loads ImageNet weights). ``from_scratch``: GroupNorm layout."""
    arch = preset.arch
    cfg = get_cfg()
    if name is None and lite.is_lite(preset):
        cfg.merge_from_file(str(ZOO / LITE_BASES[arch]))
        lite.adapt(cfg, preset, frozen_bn=not from_scratch, imagenet=imagenet)
    else:
        cfg.merge_from_file(str(config_path(name or DEFAULT_CONFIGS[arch])))
    built = ARCHITECTURES.get(cfg.MODEL.META_ARCHITECTURE)
    if built is None:
        raise ValueError(
            f"detectron2 config {name!r} builds a {cfg.MODEL.META_ARCHITECTURE}; boxal trains "
            f"{' and '.join(ARCHITECTURES)} (Faster R-CNN and RetinaNet)"
        )
    if built != arch:
        raise ValueError(
            f"detectron2 config {name!r} builds a {built}, the project's model preset a {arch}: choose a "
            f"{built}_* model preset (it sets image size and schedule)"
        )
    if built == "faster_rcnn":
        if cfg.MODEL.PROPOSAL_GENERATOR.NAME != "RPN" or cfg.MODEL.ROI_HEADS.NAME != "StandardROIHeads":
            raise ValueError(
                f"detectron2 config {name!r}: the dampened loss is written for the RPN and StandardROIHeads, "
                f"not {cfg.MODEL.PROPOSAL_GENERATOR.NAME} and {cfg.MODEL.ROI_HEADS.NAME}"
            )
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
        if dampened:
            cfg.MODEL.PROPOSAL_GENERATOR.NAME = "DampenedRPN"
            cfg.MODEL.ROI_HEADS.NAME = "DampenedROIHeads"
    else:
        cfg.MODEL.RETINANET.NUM_CLASSES = num_classes
        if dampened:
            cfg.MODEL.META_ARCHITECTURE = "DampenedRetinaNet"
    cfg.MODEL.MASK_ON = False
    cfg.MODEL.KEYPOINT_ON = False
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = cfg.MODEL.WEIGHTS if imagenet and not lite.is_lite(preset) else ""
    if from_scratch:
        cfg.MODEL.BACKBONE.FREEZE_AT = 0
        if cfg.MODEL.RESNETS.NORM == "FrozenBN":  # statistics of ImageNet weights there are none of
            cfg.MODEL.RESNETS.NORM = "GN"
    return cfg


def own_network(preset: Preset, name: str | None) -> bool:
    """Whether the config is boxal's around the preset's own network (its backbone loads ImageNet
    weights itself) rather than a Detectron2 config."""
    return name is None and lite.is_lite(preset)


def zoo_name(name: str | None, preset: Preset) -> str | None:
    """The model-zoo name of a config (None: a user's file, or a lite preset's network): its COCO key."""
    if own_network(preset, name):
        return None
    chosen = name or DEFAULT_CONFIGS[preset.arch]
    return None if chosen.startswith(("/", "file://")) else chosen
