"""Training data: items (image path + boxes), the torch dataset, and readers for COCO and Pascal VOC.

The readers reuse the service's parsers (app.formats): one parser per format in the whole product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from PIL import Image as PILImage
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from app.formats import coco, voc
from app.formats.geometry import box_defect, clip_box

NoisyMode = Literal["dampen", "drop", "full"]


@dataclass
class Item:
    """One image and its boxes (xyxy pixels), labels 0..C-1, and which boxes are noisy."""

    path: str
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    noisy: list[bool] = field(default_factory=list)
    image_id: int | str | None = None
    width: int | None = None
    height: int | None = None

    def __post_init__(self) -> None:
        if not self.noisy:
            self.noisy = [False] * len(self.boxes)
        if not len(self.boxes) == len(self.labels) == len(self.noisy):
            raise ValueError(f"{self.path}: boxes, labels and noisy differ in length")


def apply_noisy_mode(item: Item, mode: NoisyMode) -> Item:
    """drop: noisy boxes leave the targets (their regions train as background); full: they count as labels."""
    if mode == "dampen" or not any(item.noisy):
        return item
    if mode == "full":
        return Item(
            item.path,
            item.boxes,
            item.labels,
            [False] * len(item.boxes),
            item.image_id,
            item.width,
            item.height,
        )
    keep = [i for i, n in enumerate(item.noisy) if not n]
    return Item(
        item.path,
        [item.boxes[i] for i in keep],
        [item.labels[i] for i in keep],
        [False] * len(keep),
        item.image_id,
        item.width,
        item.height,
    )


def load_image(path: str | Path) -> Tensor:
    """(3, H, W) float in [0, 1]."""
    with PILImage.open(path) as img:
        return pil_to_tensor(img.convert("RGB")).float().div_(255.0)


class DetectionDataset(Dataset[tuple[Tensor, dict[str, Tensor]]]):
    """Items as (image, target) with target boxes, labels (0..C-1) and noisy; optional horizontal flip."""

    def __init__(self, items: list[Item], *, hflip: bool = False) -> None:
        self.items = items
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        item = self.items[index]
        image = load_image(item.path)
        boxes = torch.tensor(item.boxes, dtype=torch.float32).reshape(-1, 4)
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
            width = image.shape[-1]
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        target = {
            "boxes": boxes,
            "labels": torch.tensor(item.labels, dtype=torch.int64),
            "noisy": torch.tensor(item.noisy, dtype=torch.bool),
        }
        return image, target


def collate(batch: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    return [b[0] for b in batch], [b[1] for b in batch]


def coco_items(
    json_path: str | Path, image_dir: str | Path, classes: list[str] | None = None
) -> tuple[list[str], list[Item]]:
    """Classes (file order unless given) and one item per image; crowd regions and defects are skipped."""
    data = coco.load_coco(json_path)
    names = classes or list(dict.fromkeys(data.categories.values()))
    index = {name: i for i, name in enumerate(names)}
    by_image: dict[int | str, Item] = {
        image.id: Item(
            str(Path(image_dir) / image.file_name), image_id=image.id, width=image.width, height=image.height
        )
        for image in data.images
    }
    for annotation in data.annotations:
        name = data.category_name(annotation)
        item = by_image[annotation.image_id]
        if annotation.iscrowd or name not in index or box_defect(annotation.bbox, item.width, item.height):
            continue
        bbox = (
            clip_box(annotation.bbox, item.width, item.height)
            if item.width and item.height
            else annotation.bbox
        )
        item.boxes.append(bbox)
        item.labels.append(index[name])
        item.noisy.append(False)
    return names, list(by_image.values())


def voc_items(root: str | Path, classes: list[str], image_set: str | None = None) -> list[Item]:
    """One item per annotation file; unknown classes and degenerate boxes are skipped."""
    index = {name: i for i, name in enumerate(classes)}
    items = []
    for annotation in voc.read_voc_dir(root, image_set):
        path = voc.image_path(root, annotation)
        if path is None:
            continue
        item = Item(str(path), image_id=annotation.stem, width=annotation.width, height=annotation.height)
        for obj in annotation.objects:
            if obj.defect or obj.name not in index:
                continue
            item.boxes.append(clip_box(obj.bbox, annotation.width, annotation.height))
            item.labels.append(index[obj.name])
            item.noisy.append(False)
        items.append(item)
    return items
