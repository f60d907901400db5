"""Training data: the torch dataset over training records, and readers for COCO and Pascal VOC.

A record (app.rounds.training_set.TrainingImage) becomes tensors here, once, for the loss:
``boxes`` (N, 4) xyxy pixels, ``labels`` (N,) 0..C-1, ``weights`` (N,) loss weight per box, ``noisy`` (N,)
bool, the regions ``negatives`` (M, 4) and ``ignore`` (K, 4), and on a partly labeled image whose
unknown background is not trained as plain background, ``unknown_background`` (a 0-d code, regions.py).
The readers use the shared parsers
(formats/): one parser per format in the product.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image as PILImage
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from app.images import remote
from app.rounds.training_set import TargetBox, TrainingImage
from formats import coco, voc
from formats.geometry import box_defect, clip_box
from worker.engine.regions import UNKNOWN_BACKGROUND, is_region_valued


def load_image(path: str | Path) -> Tensor:
    """(3, H, W) float in [0, 1]; a remote URI is read through the image cache (app/images/remote.py)."""
    with PILImage.open(remote.local(path)) as img:
        return pil_to_tensor(img.convert("RGB")).float().div_(255.0)


def target_tensors(record: TrainingImage) -> dict[str, Tensor]:
    """A record's boxes as the tensors the detectors' losses read (see the module docstring)."""
    extra = {}
    if record.unknown_background != "full" and not record.complete:
        extra["unknown_background"] = torch.tensor(UNKNOWN_BACKGROUND[record.unknown_background])
    return {
        **extra,
        "boxes": torch.tensor([b.bbox for b in record.boxes], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor([b.label for b in record.boxes], dtype=torch.int64),
        "weights": torch.tensor([b.weight for b in record.boxes], dtype=torch.float32),
        "noisy": torch.tensor([b.noisy for b in record.boxes], dtype=torch.bool),
        "negatives": torch.tensor(record.negatives, dtype=torch.float32).reshape(-1, 4),
        "ignore": torch.tensor(record.ignore, dtype=torch.float32).reshape(-1, 4),
    }


def hflip_target(target: dict[str, Tensor], width: int) -> dict[str, Tensor]:
    """The target of the image mirrored left-right (every region-valued tensor is flipped)."""
    out = dict(target)
    for key, boxes in target.items():
        if is_region_valued(boxes):
            out[key] = torch.stack(
                [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
            )
    return out


class DetectionDataset(Dataset[tuple[Tensor, dict[str, Tensor]]]):
    """Records as (image (3, H, W) in [0, 1], target tensors); optional random horizontal flip."""

    def __init__(self, records: list[TrainingImage], *, hflip: bool = False) -> None:
        self.records = records
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        record = self.records[index]
        image = load_image(record.path)
        target = target_tensors(record)
        if self.hflip and torch.rand(()) < 0.5:
            image = image.flip(-1)
            target = hflip_target(target, image.shape[-1])
        return image, target


def collate(batch: list[tuple[Tensor, dict[str, Tensor]]]) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    return [b[0] for b in batch], [b[1] for b in batch]


def coco_items(
    json_path: str | Path, image_dir: str | Path, classes: list[str] | None = None
) -> tuple[list[str], list[TrainingImage]]:
    """Classes (file order unless given) and one record per image; crowd regions and defects skipped."""
    data = coco.load_coco(json_path)
    names = classes or list(dict.fromkeys(data.categories.values()))
    index = {name: i for i, name in enumerate(names)}
    by_image: dict[int | str, TrainingImage] = {
        image.id: TrainingImage(
            str(Path(image_dir) / image.file_name),
            image_id=image.id,
            width=image.width,
            height=image.height,
            complete=True,
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
        item.boxes.append(TargetBox(bbox, index[name]))
    return names, list(by_image.values())


def voc_items(root: str | Path, classes: list[str], image_set: str | None = None) -> list[TrainingImage]:
    """One record per annotation file; unknown classes and degenerate boxes are skipped."""
    index = {name: i for i, name in enumerate(classes)}
    items = []
    for annotation in voc.read_voc_dir(root, image_set):
        path = voc.image_path(root, annotation)
        if path is None:
            continue
        item = TrainingImage(
            str(path),
            image_id=annotation.stem,
            width=annotation.width,
            height=annotation.height,
            complete=True,
        )
        for obj in annotation.objects:
            if obj.defect or obj.name not in index:
                continue
            bbox = clip_box(obj.bbox, annotation.width, annotation.height)
            item.boxes.append(TargetBox(bbox, index[obj.name]))
        items.append(item)
    return items
