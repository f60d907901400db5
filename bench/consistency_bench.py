"""Scoring a pool with the consistency strategy against least confidence, on the same images and model.

    python bench/consistency_bench.py --images 60 --repeats 3
    python bench/consistency_bench.py --smoke          # a few seconds: that it runs and prints its table

BCCD trainval images (real photographs) under the reviewed presets' model (the MobileNetV2 lite Faster
R-CNN from the ImageNet weights of the weights extra, else from scratch, at 320-512 px), briefly trained
on 20 of them so that it predicts a realistic number of boxes. Least confidence: one prediction pass and
the score per box (what a round's scoring shard does for it). Consistency: the same pass, then each image's
flipped and rescaled views (worker/engine/views.py) and the pool normalisation. Both in this process, the
two alternating repeat by repeat, on the CPU; the ratio is what matters (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from worker import acquisition  # noqa: E402
from worker.engine.config import TrainConfig  # noqa: E402
from worker.engine.data import load_image, voc_items  # noqa: E402
from worker.engine.detector import build_detector  # noqa: E402
from worker.engine.inference import predict  # noqa: E402
from worker.engine.presets import get_preset  # noqa: E402
from worker.engine.train import seed_everything, train  # noqa: E402
from worker.engine.views import view_terms  # noqa: E402
from worker.engine.weights import WeightsUnavailable  # noqa: E402

BCCD = ROOT.parent / "shared" / "datasets" / "bccd"
CLASSES = ["RBC", "WBC", "Platelets"]
T_D = 0.05


def _detector(steps: int):  # type: ignore[no-untyped-def]
    preset = get_preset("faster_rcnn_mnv2_fpn_lite")
    seed_everything(0)
    try:
        detector = build_detector(preset, len(CLASSES), weights="imagenet")
        start = "ImageNet weights"
    except WeightsUnavailable:
        detector = build_detector(preset, len(CLASSES), weights="none")
        start = "from scratch (no weights extra)"
    records = voc_items(BCCD, CLASSES, "trainval")[:20]
    config = TrainConfig(
        epochs=1, lr=preset.lr, batch_size=2, lr_steps=(), warmup_iters=min(10, steps), iterations=steps
    )
    train(detector, records, config)
    return detector, start


def least_confidence(detector, paths: list[str]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    found = predict(detector, paths, T_D)
    probs = np.concatenate([f.probs.numpy() for f in found]) if found else np.zeros((0, len(CLASSES)))
    acquisition.build("least_confidence").score_boxes(
        acquisition.BoxBatch(np.arange(len(probs)), np.zeros(len(probs), np.int64), probs)
    )
    return time.perf_counter() - started, len(probs)


def consistency(detector, paths: list[str]) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    found = predict(detector, paths, T_D)
    pairs = zip(paths, found, strict=True)
    terms = [view_terms(detector, load_image(path), f.boxes, f.probs, T_D) for path, f in pairs]
    pool = np.concatenate(terms) if terms else np.zeros((0, 2))
    acquisition.build("consistency").score_pool(pool, np.zeros((0, 2)))
    return time.perf_counter() - started, len(pool)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=60, help="pool images scored")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="training steps of the model first")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.repeats, args.steps = 2, 1, 2
    detector, start = _detector(args.steps)
    paths = [r.path for r in voc_items(BCCD, CLASSES, "trainval")[20 : 20 + args.images]]
    times: dict[str, list[float]] = {"least_confidence": [], "consistency": []}
    boxes = 0
    for _ in range(args.repeats):
        seconds, boxes = least_confidence(detector, paths)
        times["least_confidence"].append(seconds)
        seconds, _ = consistency(detector, paths)
        times["consistency"].append(seconds)
    base = statistics.median(times["least_confidence"])
    print(f"{len(paths)} BCCD images, {boxes} candidate boxes (t_d {T_D}), model {start}, {args.steps} steps")
    print("| strategy | median s | per image (ms) | vs least confidence |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {1000 * median / len(paths):.0f} | {median / base:.2f}x |")


if __name__ == "__main__":
    main()
