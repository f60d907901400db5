"""Digit scenes: a small detection data set generated from the real handwritten digits scikit-learn ships.

Each scene is a grey canvas with 1 to 15 digits at varied scales and clutter that invites false
positives (strokes, blobs, box outlines, digit fragments). Train and test scenes are drawn from
disjoint digit samples. Written as PNG images plus COCO JSON, so everything reads it like any data set:

    root/images/{train,test}_00000.png, root/train.json, root/test.json   (classes "0".."9")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw

CLASSES = [str(d) for d in range(10)]


@dataclass(frozen=True)
class DigitScenes:
    root: Path
    train_json: Path
    test_json: Path
    images: Path


def _digits(seed: int) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    order = np.random.default_rng(seed).permutation(len(data.images))
    cut = int(len(order) * 0.7)
    images = data.images.astype(np.float32) / 16.0
    return (images[order[:cut]], data.target[order[:cut]]), (images[order[cut:]], data.target[order[cut:]])


def _overlaps(box: list[int], boxes: list[list[int]], limit: float = 0.15) -> bool:
    for other in boxes:
        ix = max(0, min(box[2], other[2]) - max(box[0], other[0]))
        iy = max(0, min(box[3], other[3]) - max(box[1], other[1]))
        smaller = min((box[2] - box[0]) * (box[3] - box[1]), (other[2] - other[0]) * (other[3] - other[1]))
        if ix * iy > limit * smaller:
            return True
    return False


def _scene(
    rng: np.random.Generator,
    digits: np.ndarray,
    targets: np.ndarray,
    size: int,
    max_digits: int,
    scale: tuple[int, int],
    clutter: bool,
) -> tuple[np.ndarray, list[tuple[list[int], int]]]:
    canvas = np.full((size, size), rng.uniform(0.05, 0.3), dtype=np.float32)
    gx, gy = rng.uniform(-0.15, 0.15, size=2)
    yy, xx = np.mgrid[0:size, 0:size] / size
    canvas += gx * xx + gy * yy + rng.normal(0, 0.04, (size, size)).astype(np.float32)
    if clutter:
        layer = PILImage.new("F", (size, size), 0.0)
        draw = ImageDraw.Draw(layer)
        for _ in range(rng.integers(2, 7)):
            kind = rng.integers(0, 3)
            x, y = (int(v) for v in rng.integers(0, size, 2))
            w, h = (int(v) for v in rng.integers(6, size // 3, 2))
            shade = float(rng.uniform(0.3, 0.8))
            if kind == 0:
                draw.line(
                    [x, y, x + w * rng.choice([-1, 1]), y + h * rng.choice([-1, 1])],
                    fill=shade,
                    width=int(rng.integers(1, 3)),
                )
            elif kind == 1:
                draw.ellipse([x, y, x + w // 3 + 2, y + h // 3 + 2], fill=shade)
            else:
                draw.rectangle([x, y, x + w, y + h], outline=shade, width=1)
        canvas = np.maximum(canvas, np.asarray(layer, dtype=np.float32))
        for _ in range(rng.integers(0, 3)):  # half a digit: looks like a digit, is not one
            piece = digits[rng.integers(len(digits))]
            piece = piece[:4] if rng.random() < 0.5 else piece[:, :4]
            s = int(rng.integers(scale[0], scale[1]))
            img = np.asarray(
                PILImage.fromarray(piece).resize(
                    (max(2, s * piece.shape[1] // 8), max(2, s * piece.shape[0] // 8)), PILImage.BILINEAR
                )
            )
            x, y = (int(v) for v in rng.integers(0, size - max(img.shape), 2))
            region = canvas[y : y + img.shape[0], x : x + img.shape[1]]
            canvas[y : y + img.shape[0], x : x + img.shape[1]] = np.maximum(
                region, img[: region.shape[0], : region.shape[1]]
            )
    boxes: list[list[int]] = []
    placed: list[tuple[list[int], int]] = []
    for _ in range(int(rng.integers(1, max_digits + 1))):
        index = int(rng.integers(len(digits)))
        s = int(rng.integers(scale[0], scale[1] + 1))
        glyph = np.asarray(PILImage.fromarray(digits[index]).resize((s, s), PILImage.BILINEAR))
        for _attempt in range(20):
            x, y = (int(v) for v in rng.integers(0, size - s, 2))
            ys, xs = np.where(glyph > 0.25)
            if len(xs) == 0:
                break
            box = [x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1]
            if not _overlaps(box, boxes):
                ink = float(rng.uniform(0.7, 1.0))
                region = canvas[y : y + s, x : x + s]
                canvas[y : y + s, x : x + s] = np.maximum(region, glyph * ink)
                boxes.append(box)
                placed.append((box, int(targets[index])))
                break
    return np.clip(canvas, 0, 1), placed


def generate(
    root: str | Path,
    *,
    train_images: int = 200,
    test_images: int = 60,
    size: int = 128,
    max_digits: int = 15,
    scale: tuple[int, int] = (14, 36),
    clutter: bool = True,
    seed: int = 0,
) -> DigitScenes:
    """Write the data set under ``root`` (idempotent for the same arguments) and return its paths."""
    root = Path(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    (train_digits, train_targets), (test_digits, test_targets) = _digits(seed)
    for split, count, digits, targets in (
        ("train", train_images, train_digits, train_targets),
        ("test", test_images, test_digits, test_targets),
    ):
        rng = np.random.default_rng([seed, 0 if split == "train" else 1])
        coco: dict = {
            "images": [],
            "annotations": [],
            "categories": [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)],
        }
        for i in range(count):
            canvas, placed = _scene(rng, digits, targets, size, max_digits, scale, clutter)
            name = f"{split}_{i:05d}.png"
            PILImage.fromarray((canvas * 255).astype(np.uint8)).convert("RGB").save(images_dir / name)
            coco["images"].append({"id": i + 1, "file_name": name, "width": size, "height": size})
            for box, digit in placed:
                x1, y1, x2, y2 = box
                coco["annotations"].append(
                    {
                        "id": len(coco["annotations"]) + 1,
                        "image_id": i + 1,
                        "category_id": digit + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                    }
                )
        (root / f"{split}.json").write_text(json.dumps(coco))
    return DigitScenes(
        root=root, train_json=root / "train.json", test_json=root / "test.json", images=images_dir
    )
