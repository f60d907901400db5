"""Where a Detectron2 detector starts: a user's checkpoint (.pth, .pkl), boxal's own saved models, and
weights that do not fit (named)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from worker.engine.d2 import MISSING, available
from worker.engine.presets import get_preset
from worker.engine.weights import WeightsMismatch

pytestmark = pytest.mark.skipif(not available(), reason=MISSING)


def _build(arch: str, classes: int = 3, **kwargs):  # type: ignore[no-untyped-def]
    from worker.engine.d2 import build_d2_detector

    return build_d2_detector(get_preset(f"{arch}_r50_fpn"), classes, min_size=128, max_size=128, **kwargs)


def test_a_saved_model_rebuilds_with_its_own_layout_and_weights(tmp_path: Path) -> None:
    """What the worker saves (a payload with the state under "model") starts an identical detector:
    from scratch it used GroupNorm, and the rebuilt one does too."""
    torch.manual_seed(0)
    trained = _build("faster_rcnn")
    path = tmp_path / "model.pt"
    torch.save({"model": trained.model.state_dict(), "preset": "faster_rcnn_r50_fpn", "num_classes": 3}, path)
    again = _build("faster_rcnn", weights=str(path))
    mine, theirs = trained.model.state_dict(), again.model.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert not any(k.endswith("running_mean") for k in theirs)  # GroupNorm, as trained


def test_a_model_zoo_pkl_loads_with_class_layers_made_anew(tmp_path: Path) -> None:
    """A .pkl as the model zoo serves it (numpy arrays under "model"), for 80 classes, starts a 3-class
    project: every other tensor is taken, the class-dependent layers stay fresh."""
    torch.manual_seed(1)
    coco = _build("retinanet", classes=80)
    arrays = {k: v.numpy() for k, v in coco.model.state_dict().items()}
    path = tmp_path / "model_final.pkl"
    with path.open("wb") as file:
        pickle.dump({"model": arrays, "__author__": "Detectron2 Model Zoo"}, file)
    mine = _build("retinanet", weights=str(path)).model.state_dict()
    assert torch.equal(mine["head.bbox_pred.weight"], coco.model.state_dict()["head.bbox_pred.weight"])
    assert mine["head.cls_score.weight"].shape[0] == 3 * 9  # 9 anchors x 3 classes: made anew


def test_weights_that_do_not_fit_name_the_first_tensor_and_code_in_a_pickle_is_refused(
    tmp_path: Path,
) -> None:
    retina = tmp_path / "retinanet.pth"
    torch.save({"model": _build("retinanet").model.state_dict()}, retina)
    with pytest.raises(WeightsMismatch, match=r"tensor 'head\.\w+"):
        _build("faster_rcnn", weights=str(retina))  # a RetinaNet's heads have no place in a Faster R-CNN

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (print, ("this ran",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"x": Payload()}}))
    with pytest.raises(WeightsMismatch, match=r"builtins\.print is not allowed"):
        _build("faster_rcnn", weights=str(evil))


def test_configs_are_checked_before_anything_is_built(tmp_path: Path) -> None:
    from worker.engine.d2.config import make_cfg

    faster, retina = get_preset("faster_rcnn_r50_fpn"), get_preset("retinanet_r50_fpn")

    with pytest.raises(ValueError, match="builds a retinanet, the project's model preset a faster_rcnn"):
        make_cfg(faster, "COCO-Detection/retinanet_R_50_FPN_1x.yaml", 3, from_scratch=True)
    with pytest.raises(ValueError, match="no such file"):
        make_cfg(faster, "COCO-Detection/nothing.yaml", 3, from_scratch=True)
    with pytest.raises(ValueError, match="may not leave the zoo"):
        make_cfg(faster, "../../../etc/passwd.yaml", 3, from_scratch=True)
    with pytest.raises(ValueError, match="only YAML"):
        make_cfg(retina, "COCO-Detection/retinanet_R_50_FPN_1x.py", 3, from_scratch=True)
    unsafe = tmp_path / "mine.yaml"
    unsafe.write_text('MODEL:\n  META_ARCHITECTURE: !!python/object/apply:os.system ["echo ran"]\n')
    with pytest.raises(ValueError, match="not plain YAML"):
        make_cfg(faster, str(unsafe), 3, from_scratch=True)
    own = tmp_path / "own.yaml"  # a user's config on top of a zoo base: plain YAML, read
    zoo_base = "COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml"
    from worker.engine.d2.config import ZOO

    own.write_text(f'_BASE_: "{ZOO / zoo_base}"\nMODEL:\n  RPN:\n    POST_NMS_TOPK_TRAIN: 500\n')
    cfg = make_cfg(faster, str(own), 3, from_scratch=True)
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN == 500 and cfg.MODEL.ROI_HEADS.NAME == "DampenedROIHeads"
