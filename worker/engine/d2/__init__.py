"""The Detectron2 backend: its Faster R-CNN and RetinaNet behind boxal's detector interface, with the
dampened loss (a project's ``backend`` setting chooses it; an optional install: docs/SETTINGS.md).

- config.py: which Detectron2 config, adapted (classes, dampened heads, no masks);
- lite.py: boxal's CPU-sized presets' own network as a Detectron2 backbone;
- matching.py: boxal's targets as ``Instances``, and matching that honours negatives and ignore regions;
- rcnn.py, retinanet.py: the dampened heads, registered in Detectron2's registries;
- checkpoints.py: where the weights come from (scratch, ImageNet, COCO, a user's checkpoint);
- detector.py: the adapters (input conversion, detect, rescore).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from worker.engine.losses import Reading
from worker.engine.presets import Preset
from worker.engine.weights import NAMED, file_path

MISSING = (
    "the detectron2 backend needs Detectron2, which is not installed: pip install "
    "'git+https://github.com/facebookresearch/detectron2.git' --no-build-isolation (docs/SETTINGS.md)"
)


def available() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def build_d2_detector(
    preset: Preset,
    num_classes: int,
    *,
    config: str | None = None,
    weights: str = "none",
    min_size: int | None = None,
    max_size: int | None = None,
    dampened: bool = True,
    reading: Reading = "anchor_weights",
):  # type: ignore[no-untyped-def]
    """A Detectron2 detector for ``num_classes`` classes from ``config`` (config.py; None: the zoo's R-50
    FPN config of the preset's architecture, or a lite preset's own network), starting from ``weights``
    (checkpoints.py)."""
    if not available():
        raise RuntimeError(MISSING)
    from detectron2.modeling import build_model

    from worker.engine.d2 import rcnn, retinanet  # noqa: F401  (registers the dampened heads)
    from worker.engine.d2.checkpoints import load_start, read_checkpoint
    from worker.engine.d2.config import make_cfg, own_network, zoo_name
    from worker.engine.d2.detector import D2FasterRCNNDetector, D2RetinaNetDetector

    state = None if weights in NAMED else read_checkpoint(file_path(weights) or Path(weights))
    # a file without BatchNorm statistics was trained from scratch: the same (GroupNorm) layout again
    scratch = weights == "none" or (state is not None and not any(k.endswith("running_mean") for k in state))
    own = own_network(preset, config)
    imagenet = weights == "imagenet"
    cfg = make_cfg(preset, config, num_classes, from_scratch=scratch, imagenet=imagenet, dampened=dampened)
    model = build_model(cfg)
    rcnn.set_reading(model, reading)
    if not (own and imagenet):  # a lite backbone loads its ImageNet weights as it is built
        load_start(model, cfg, preset.arch, weights, zoo_name(config, preset), state)
    kind = D2FasterRCNNDetector if preset.arch == "faster_rcnn" else D2RetinaNetDetector
    return kind(
        model,
        preset,
        num_classes,
        min_size=min_size or preset.min_size,
        max_size=max_size or preset.max_size,
        bgr=cfg.INPUT.FORMAT == "BGR",
    )
