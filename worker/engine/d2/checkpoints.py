"""Where a Detectron2 detector starts (the project's ``weights`` setting), as weights.py does for torchvision:

- ``none``: from scratch;
- ``imagenet``: the backbone weights the config names (``MODEL.WEIGHTS``, e.g. MSRA's R-50), loaded by
  Detectron2's own checkpointer, which renames Caffe2 tensors and leaves the heads fresh;
- ``coco``: the model zoo's COCO checkpoint of a zoo config, class-dependent layers made anew;
- a file (absolute path or ``file://`` URI): a Detectron2 checkpoint, ``.pth`` (what its trainer writes)
  or ``.pkl`` (what its model zoo serves). Every tensor is checked (weights.load_checked): one that does
  not fit is an error naming it.

A ``.pkl`` is a pickle, which can run code when loaded; this reader unpickles only what model-zoo files
hold (dicts, strings, numbers and numpy arrays) and refuses anything else.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from worker.engine.weights import WeightsMismatch, WeightsUnavailable, file_path, load_checked

# the layers whose shape depends on the number of classes, per architecture
CLASS_HEADS = {
    "faster_rcnn": (
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
    ),
    "retinanet": ("head.cls_score.weight", "head.cls_score.bias"),
}
ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")
        return super().find_class(module, name)


def read_checkpoint(path: Path) -> dict[str, Tensor]:
    """The model tensors of a Detectron2 checkpoint file."""
    if not path.is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    try:
        if path.suffix == ".pkl":
            with path.open("rb") as file:
                loaded: Any = _ArraysOnly(file, encoding="latin1").load()
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsMismatch(f"weights file {path} is not a readable Detectron2 checkpoint: {exc}") from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("model"), dict):
        loaded = loaded["model"]
    if isinstance(loaded, dict) and "blobs" in loaded:
        raise WeightsMismatch(f"weights file {path} is a Caffe2 checkpoint; convert it with Detectron2 first")
    if not isinstance(loaded, dict):
        raise WeightsMismatch(f"weights file {path} holds no mapping of tensor names to weights")
    state = {}
    for name, value in loaded.items():
        if isinstance(value, np.ndarray):
            value = torch.from_numpy(value.copy())
        if not isinstance(value, Tensor):
            raise WeightsMismatch(f"weights file {path}: {name!r} is not a tensor")
        state[name] = value
    return state


def load_start(
    model: nn.Module, cfg: Any, arch: str, source: str, zoo: str | None, state: dict[str, Tensor] | None
) -> None:
    """Load what ``source`` names into ``model`` (built from ``cfg``, the config named ``zoo`` in the
    model zoo, or None for a user's file); ``state``: a file source's tensors, read already."""
    if source == "none":
        return
    if source == "imagenet":
        _download_into(
            model, cfg.MODEL.WEIGHTS or "", f"ImageNet weights of the config ({cfg.MODEL.WEIGHTS})"
        )
        return
    if source == "coco":
        if zoo is None:
            raise WeightsUnavailable("weights coco: a config file of your own has no model-zoo checkpoint")
        try:
            from detectron2.model_zoo import get_checkpoint_url  # imports pkg_resources (setuptools < 81)

            url = get_checkpoint_url(zoo)
        except Exception as exc:  # no such zoo entry, or pkg_resources missing
            raise WeightsUnavailable(f"weights coco: no model-zoo checkpoint for {zoo}: {exc}") from exc
        local = _fetch(url, f"the COCO checkpoint of {zoo}")
        load_checked(model, read_checkpoint(local), what=f"coco weights ({url})", remake=CLASS_HEADS[arch])
        return
    path = file_path(source)
    assert path is not None and state is not None
    load_checked(model, state, what=f"weights file {path}", remake=CLASS_HEADS[arch])


def _fetch(url: str, what: str) -> Path:
    from detectron2.utils.file_io import PathManager

    try:
        return Path(PathManager.get_local_path(url))
    except Exception as exc:  # no network, no cached copy
        raise WeightsUnavailable(
            f"{what} ({url}) could not be fetched: {type(exc).__name__}: {exc}. Download it where a machine "
            "can, and name the file as weights, or use weights 'none'"
        ) from exc


def _download_into(model: nn.Module, url: str, what: str) -> None:
    from detectron2.checkpoint import DetectionCheckpointer

    if not url:
        raise WeightsUnavailable(f"{what}: the config names no MODEL.WEIGHTS")
    local = _fetch(url, what)
    DetectionCheckpointer(model).load(str(local))
