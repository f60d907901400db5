"""Experiment presets: a CPU smoke test; CPU-sized digits and BCCD runs, and the same settings for any VOC
or COCO data set; the paper's VOC 2012 and COCO settings (Sec. 4) for a GPU machine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from oracle import datasets
from oracle.datasets import Dataset
from oracle.experiment import Arm, Experiment

BOX_VS_IMAGE = [
    Arm("box", "random"),
    Arm("box", "least_confidence"),
    Arm("image", "random"),
    Arm("image", "least_confidence", "mean"),
]
PAPER_ARMS = [
    Arm("box", "random"),
    Arm("box", "least_confidence"),
    Arm("box", "coreset"),
    Arm("image", "random"),
    Arm("image", "least_confidence", "mean"),
    Arm("image", "coreset"),
]
SHARED_BCCD = Path("../shared/datasets/bccd")
LITE = {"model": "faster_rcnn_r18_fpn_lite", "batch_size": 2, "lr": 0.01, "lambda_d": 0.5, "noisy": "dampen"}


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    dataset: Callable[[Path | None, Path], Dataset]  # (--data, output dir) -> data set
    experiment: Callable[[], Experiment]


def _digits(train: int, test: int, size: int) -> Callable[[Path | None, Path], Dataset]:
    def build(data: Path | None, out: Path) -> Dataset:
        return datasets.digits(data or out / "digit-scenes", train_images=train, test_images=test, size=size)

    return build


def _voc(
    pool_set: str, test_set: str, default: Path | None = None, classes: list[str] | None = None
) -> Callable[[Path | None, Path], Dataset]:
    """A VOC directory: --data, or the default; the classes are the default's, or read from --data's files."""

    def build(data: Path | None, out: Path) -> Dataset:
        root = data or default
        if root is None:
            raise ValueError(
                "this preset needs --data: a Pascal VOC directory (Annotations/, JPEGImages/, "
                "ImageSets/Main/)"
            )
        return datasets.voc(root, pool_set=pool_set, test_set=test_set, classes=None if data else classes)

    return build


def _coco_folder(data: Path | None, out: Path) -> Dataset:
    if data is None:
        raise ValueError(
            "this preset needs --data: a folder with train.json and test.json (COCO) and images/"
        )
    return datasets.coco(data / "train.json", data / "images", data / "test.json", data / "images")


def _coco_2017(data: Path | None, out: Path) -> Dataset:
    if data is None:
        raise ValueError(
            "coco-paper needs --data: a folder with annotations/instances_{train,val}2017.json, "
            "train2017/ and val2017/"
        )
    return datasets.coco(
        data / "annotations" / "instances_train2017.json",
        data / "train2017",
        data / "annotations" / "instances_val2017.json",
        data / "val2017",
    )


def _cpu(name: str, **overrides: object) -> Experiment:
    """The CPU-sized experiment on real photographs (BCCD, or any VOC/COCO data set)."""
    settings = {**LITE, "min_size": 224, "max_size": 299, "epochs": 3, "t_d": 0.3, "warm_start": True}
    return Experiment(
        name=name,
        arms=BOX_VS_IMAGE,
        seeds=[0],
        initial_images=30,
        rounds=3,
        box_round=80,
        image_round=6,
        settings={**settings, **overrides},
        initial_settings={"epochs": 12},
    )


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke",
        "tiny digit scenes, random box vs image queries, 2 rounds: the CI check (about a minute)",
        _digits(24, 8, 96),
        lambda: Experiment(
            name="smoke",
            arms=[Arm("box", "random"), Arm("image", "random")],
            seeds=[0],
            initial_images=4,
            rounds=2,
            box_round=8,
            image_round=2,
            settings={**LITE, "min_size": 96, "max_size": 96, "epochs": 2, "t_d": 0.001, "warm_start": True},
            initial_settings={"epochs": 3},
        ),
    ),
    "digits": Preset(
        "digits",
        "digit scenes (128 px): box vs image queries, random and least confidence, on CPU",
        _digits(300, 100, 128),
        lambda: Experiment(
            name="digits",
            arms=BOX_VS_IMAGE,
            seeds=[0],
            initial_images=60,
            rounds=4,
            box_round=60,
            image_round=8,
            settings={**LITE, "min_size": 128, "max_size": 128, "epochs": 4, "t_d": 0.3, "warm_start": True},
            initial_settings={"epochs": 14},
        ),
    ),
    "bccd": Preset(
        "bccd",
        "BCCD blood cells (real photographs): box vs image queries, random and least confidence, on CPU",
        _voc("trainval", "test", SHARED_BCCD, ["RBC", "WBC", "Platelets"]),
        lambda: _cpu("bccd"),
    ),
    "voc": Preset(
        "voc",
        "any Pascal VOC directory (--data; pool: trainval, test: test) with the BCCD settings, on CPU",
        _voc("trainval", "test"),
        lambda: _cpu("voc"),
    ),
    "coco": Preset(
        "coco",
        "any COCO data set (--data: train.json, test.json, images/) with the BCCD settings, on CPU",
        _coco_folder,
        lambda: _cpu("coco"),
    ),
    # The paper's settings (Sec. 4), for a GPU machine.
    "voc12-paper": Preset(
        "voc12-paper",
        "PASCAL VOC 2012 as in the paper (--data: VOCdevkit/VOC2012): FPN Faster R-CNN R-50, "
        "500 initial images, 1,000 boxes or 500 images per round, 15 epochs, lr 0.002 (x0.1 after epoch 8), "
        "batch 2",
        _voc("train", "val"),
        lambda: Experiment(
            name="voc12-paper",
            arms=PAPER_ARMS,
            seeds=[0, 1, 2],
            initial_images=500,
            rounds=8,
            box_round=1000,
            image_round=500,
            settings={
                "model": "faster_rcnn_r50_fpn",
                "epochs": 15,
                "lr": 0.002,
                "batch_size": 2,
                "lambda_d": 0.5,
                "t_d": 0.05,
            },
        ),
    ),
    "coco-paper": Preset(
        "coco-paper",
        "MS COCO 2017 as in the paper: 5,000 initial images, 5,000 boxes or 1,000 images per "
        "round, 4 rounds, 8 epochs, lr 0.0025, batch 2",
        _coco_2017,
        lambda: Experiment(
            name="coco-paper",
            arms=PAPER_ARMS,
            seeds=[0, 1, 2],
            initial_images=5000,
            rounds=4,
            box_round=5000,
            image_round=1000,
            settings={
                "model": "faster_rcnn_r50_fpn",
                "epochs": 8,
                "lr": 0.0025,
                "batch_size": 2,
                "lambda_d": 0.5,
                "t_d": 0.05,
            },
        ),
    ),
}
