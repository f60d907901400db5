"""The fully supervised model's learning curve on one schedule: how many optimizer steps a preset's model
needs on a data set before its test mAP settles, evaluated every few steps (the reviewed experiments'
reference is judged only once per 1,000-step round).

    python bench/reference_curve.py --preset aquarium --steps 2000 --every 250
    python bench/reference_curve.py --preset aquarium --steps 2000 --every 250 --min-size 512 --max-size 800
    python bench/reference_curve.py --preset aquarium --images 20 --steps 450 --every 150 --fit  # initial set
    python bench/reference_curve.py --smoke      # a few seconds: that it runs and prints its table

The model, learning rate and batch size are the preset's (each can be overridden); one schedule of
``--steps`` steps with the preset's warmup and x0.1 for the last quarter. Test mAP from pycocotools on the
preset's whole test split, with AP@0.5 per class; ``--out`` adds one JSON line per evaluation.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.rounds.training_set import TargetBox, TrainingImage  # noqa: E402
from oracle.datasets import Dataset, ImageRecord  # noqa: E402
from oracle.presets import PRESETS  # noqa: E402
from worker.engine.config import TrainConfig  # noqa: E402
from worker.engine.detector import Detector, build_detector  # noqa: E402
from worker.engine.evaluate import evaluate  # noqa: E402
from worker.engine.presets import get_preset  # noqa: E402
from worker.engine.train import Progress, seed_everything, train  # noqa: E402


def items(records: list[ImageRecord], classes: list[str]) -> list[TrainingImage]:
    """The data set's images as fully labeled training records."""
    index = {name: i for i, name in enumerate(classes)}
    return [
        TrainingImage(
            str(r.path),
            [TargetBox(list(gt.bbox), index[gt.label]) for gt in r.truth],
            image_id=r.external_id,
            width=r.width,
            height=r.height,
            complete=True,
        )
        for r in records
    ]


class Curve:
    """Evaluates the model every ``every`` steps from inside the training loop, one table row each."""

    def __init__(
        self,
        detector: Detector,
        test: list[TrainingImage],
        classes: list[str],
        every: int,
        out: Any,
        fitted: list[TrainingImage] | None = None,
    ):
        self.detector, self.test, self.classes, self.every, self.out = detector, test, classes, every, out
        self.fitted = fitted  # the training images, evaluated too: how well the model fits what it saw
        self.step, self.losses, self.started, self.paused = 0, [], time.perf_counter(), 0.0

    def __call__(self, progress: Progress) -> None:
        self.step += 1
        self.losses.append(sum(progress.losses.values()))
        if self.step % self.every == 0:
            self.row(progress.lr)
            self.detector.model.train()  # the loop sets train mode once per epoch

    def row(self, lr: float) -> dict[str, Any]:
        paused = time.perf_counter()
        metrics = evaluate(self.detector, self.test)
        fit = evaluate(self.detector, self.fitted)["map50"] if self.fitted else None
        self.paused += time.perf_counter() - paused
        row = {
            "step": self.step,
            "train_s": round(time.perf_counter() - self.started - self.paused, 1),
            "loss": round(sum(self.losses) / max(1, len(self.losses)), 3),
            "lr": lr,
            "map50": round(metrics["map50"], 4),
            "map": round(metrics["map"], 4),
            "ap50_per_class": dict(zip(self.classes, metrics["map50_per_class"], strict=True)),
            "train_map50": None if fit is None else round(fit, 4),
        }
        self.losses = []
        per_class = " / ".join("-" if v is None else f"{v:.2f}" for v in row["ap50_per_class"].values())
        print(
            f"| {row['step']} | {row['train_s']:.0f} s | {row['loss']:.3f} | {row['map50']:.3f} "
            f"| {row['map']:.3f} | {per_class} |" + ("" if fit is None else f" {fit:.3f} |"),
            flush=True,
        )
        if self.out is not None:
            self.out.write(json.dumps(row) + "\n")
            self.out.flush()
        return row


def run(args: argparse.Namespace, dataset: Dataset) -> None:
    settings = PRESETS[args.preset].experiment().settings
    preset = get_preset(args.model or settings.get("model", "faster_rcnn_r18_fpn_lite"))
    min_size = args.min_size or settings.get("min_size") or preset.min_size
    max_size = args.max_size or settings.get("max_size") or preset.max_size
    pool = dataset.pool if args.images is None else random.Random(args.seed).sample(dataset.pool, args.images)
    train_items, test = items(pool, dataset.classes), items(dataset.test, dataset.classes)
    print(
        f"{args.preset}: {preset.name} at {min_size}-{max_size} px, {len(train_items)} training images "
        f"({sum(len(i.boxes) for i in train_items)} boxes), {len(test)} test images; {args.steps} steps of "
        f"batch {args.batch_size or settings.get('batch_size', preset.batch_size)} at lr "
        f"{args.lr or settings.get('lr', preset.lr)}, x0.1 after "
        f"{args.steps * preset.lr_steps[0] // preset.epochs}"
    )
    fit = " mAP@0.5 on the training images |" if args.fit else ""
    print(f"| steps | training | mean loss | mAP@0.5 | mAP | AP@0.5 {' / '.join(dataset.classes)} |{fit}")
    print("| ---: | ---: | ---: | ---: | ---: | --- |" + " ---: |" * args.fit)
    seed_everything(args.seed)
    weights = args.weights or ("imagenet" if preset.pretrained else "none")
    detector = build_detector(
        preset, len(dataset.classes), weights=weights, min_size=min_size, max_size=max_size
    )
    config = TrainConfig(
        epochs=preset.epochs,
        lr=args.lr or settings.get("lr", preset.lr),
        batch_size=args.batch_size or settings.get("batch_size", preset.batch_size),
        lr_steps=preset.lr_steps,
        warmup_iters=preset.warmup_iters,
        iterations=args.steps,
        seed=args.seed,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") if args.out else nullcontext() as out:
        curve = Curve(detector, test, dataset.classes, args.every, out, train_items if args.fit else None)
        train(detector, train_items, config, progress=curve)
        if curve.step % args.every:
            curve.row(config.lr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--preset", default="aquarium", help="an experiment preset: its data set and settings"
    )
    parser.add_argument("--data", type=Path, help="the data set's location, where the preset needs one")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps in all")
    parser.add_argument("--every", type=int, default=250, help="evaluate every this many steps")
    parser.add_argument("--images", type=int, help="train on this many pool images (seeded); default: all")
    parser.add_argument("--model", help="a model preset; default: the experiment preset's")
    parser.add_argument("--weights", help="none, imagenet, coco or a file; default: the model preset's")
    parser.add_argument("--min-size", type=int)
    parser.add_argument("--max-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fit", action="store_true", help="also evaluate on the training images")
    parser.add_argument("--out", type=Path, help="one JSON line per evaluation")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    workdir = Path("experiments") / "reference-curve"
    dataset = PRESETS[args.preset].dataset(args.data, workdir)
    if args.smoke:
        args.steps, args.every, args.min_size, args.max_size = 4, 2, 64, 96
        dataset = Dataset(dataset.name, dataset.classes, dataset.root, dataset.pool[:6], dataset.test[:3])
        args.images = None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    run(args, dataset)


if __name__ == "__main__":
    main()
