"""Data sets the experiments run on, read with the product's own parsers (formats/): generated digit
scenes, any Pascal VOC directory (BCCD is one), any Ultralytics YOLO directory (Aquarium is one), any
COCO JSON with its images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from formats import coco as coco_format
from formats import voc as voc_format
from formats import yolo as yolo_format
from formats.geometry import box_defect, clip_box
from oracle.answers import GroundTruth


@dataclass(frozen=True)
class ImageRecord:
    external_id: str
    path: Path
    width: int
    height: int
    truth: list[GroundTruth]


@dataclass(frozen=True)
class Dataset:
    name: str
    classes: list[str]
    root: Path  # every image lies under it (the server's BOXAL_IMAGE_ROOTS must allow it)
    pool: list[ImageRecord]
    test: list[ImageRecord]

    @property
    def pool_boxes(self) -> int:
        return sum(len(im.truth) for im in self.pool)


def _coco_records(json_path: Path, image_dir: Path, prefix: str) -> tuple[list[str], list[ImageRecord]]:
    data = coco_format.load_coco(json_path)
    truth: dict[object, list[GroundTruth]] = {im.id: [] for im in data.images}
    sizes = {im.id: (im.width, im.height) for im in data.images}
    for a in data.annotations:
        width, height = sizes[a.image_id]
        if a.iscrowd or box_defect(a.bbox, width, height):
            continue
        bbox = clip_box(a.bbox, width, height) if width and height else a.bbox
        truth[a.image_id].append(GroundTruth(bbox, data.category_name(a)))
    classes = list(dict.fromkeys(data.categories.values()))
    records = []
    for im in data.images:
        if im.width is None or im.height is None:
            raise ValueError(f"{json_path}: image {im.id} has no width/height")
        records.append(
            ImageRecord(f"{prefix}{im.id}", image_dir / im.file_name, im.width, im.height, truth[im.id])
        )
    return classes, records


def digits(root: Path, *, train_images: int, test_images: int, size: int, seed: int = 0) -> Dataset:
    from oracle.digits import CLASSES, generate  # scikit-learn's digits: needs boxal[worker]

    scenes = generate(root, train_images=train_images, test_images=test_images, size=size, seed=seed)
    _, pool = _coco_records(scenes.train_json, scenes.images, "train-")
    _, test = _coco_records(scenes.test_json, scenes.images, "test-")
    return Dataset("digits", CLASSES, scenes.root, pool, test)


def coco(pool_json: Path, pool_images: Path, test_json: Path, test_images: Path) -> Dataset:
    classes, pool = _coco_records(pool_json, pool_images, "pool-")
    _, test = _coco_records(test_json, test_images, "test-")
    root = Path(*Path(pool_images).resolve().parts[:2])  # the common top folder
    return Dataset(Path(pool_json).stem, classes, root, pool, test)


def voc(
    root: Path, *, pool_set: str = "trainval", test_set: str = "test", classes: list[str] | None = None
) -> Dataset:
    root = Path(root).resolve()

    def records(image_set: str) -> list[ImageRecord]:
        out = []
        for annotation in voc_format.read_voc_dir(root, image_set):
            path = voc_format.image_path(root, annotation)
            if path is None:
                raise ValueError(f"{annotation.stem}: no image under {root / 'JPEGImages'}")
            truth = [
                GroundTruth(clip_box(o.bbox, annotation.width, annotation.height), o.name)
                for o in annotation.objects
                if o.defect is None
            ]
            out.append(ImageRecord(annotation.stem, path, annotation.width, annotation.height, truth))
        return out

    pool, test = records(pool_set), records(test_set)
    names = classes or sorted({t.label for im in pool + test for t in im.truth})
    return Dataset(root.name, names, root, pool, test)


def yolo(root: Path, *, pool_subsets: tuple[str, ...], test_subsets: tuple[str, ...]) -> Dataset:
    """An Ultralytics YOLO directory: the pool from some subsets, the test split from others (records
    keyed by file stem, as the server's YOLO import keys them). Unusable lines are left out."""
    root = Path(root).resolve()
    names = yolo_format.class_names(root)

    def records(subsets: tuple[str, ...]) -> list[ImageRecord]:
        out = []
        for subset in subsets:
            for image in yolo_format.read_yolo_dir(root, names, subset):
                truth = [
                    GroundTruth(clip_box(o.bbox, image.width, image.height), o.name)
                    for o in image.objects
                    if o.defect is None and o.name and not box_defect(o.bbox, image.width, image.height)
                ]
                out.append(ImageRecord(image.stem, image.path, image.width, image.height, truth))
        return out

    return Dataset(root.name, names, root, records(pool_subsets), records(test_subsets))
