"""Detection-engine speed, each figure a ratio against a baseline measured in the same process.

    python bench/engine_bench.py

1. A training step (forward + backward + SGD step) with the dampened loss against the same step with
   stock torchvision heads: same weights, same batch, same sampler seed; runs interleaved.
2. Pool inference returning probabilities, box features and image features (Detector.detect) against
   plain ``model(images)`` in eval mode; interleaved.
3. Core-set selection of K=1,000 from 100,000 boxes of 1,024-d float32 features with 1,000 labeled
   centres: wall time and peak memory above the feature matrix (tracemalloc sees numpy's buffers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.acquisition.coreset import k_center_greedy
from worker.engine.detector import build_detector
from worker.engine.presets import get_preset


def batch(size: int, n: int) -> tuple[list[torch.Tensor], list[dict]]:
    """Random images with 8 boxes each, every third one noisy at lambda_d 0.5 (the loss's tensors)."""
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.rand(8, 2, generator=g) * (size * 0.7)
        wh = torch.rand(8, 2, generator=g) * (size * 0.25) + 8
        noisy = torch.tensor([j % 3 == 0 for j in range(8)])
        targets.append(
            {
                "boxes": torch.cat([xy, xy + wh], dim=1),
                "labels": torch.randint(0, 3, (8,), generator=g),
                "weights": torch.where(noisy, 0.5, 1.0),
                "noisy": noisy,
            }
        )
    return images, targets


def train_steps(preset_name: str, size: int, steps: int) -> tuple[float, float]:
    preset = get_preset(preset_name)
    torch.manual_seed(0)
    dampened = build_detector(preset, 3, weights="none", min_size=size, max_size=size)
    stock = build_detector(preset, 3, weights="none", min_size=size, max_size=size, dampened=False)
    stock.model.load_state_dict(dampened.model.state_dict())
    images, targets = batch(size, 2)
    plain_targets = [{k: v for k, v in t.items() if k in ("boxes", "labels")} for t in targets]
    runs: dict[str, list[float]] = {"dampened": [], "stock": []}
    optimisers = {
        name: torch.optim.SGD(d.model.parameters(), lr=1e-4, momentum=0.9)
        for name, d in (("dampened", dampened), ("stock", stock))
    }
    for step in range(steps + 2):
        for name, detector, tgt in (("dampened", dampened, targets), ("stock", stock, plain_targets)):
            detector.model.train()
            torch.manual_seed(step)
            start = time.perf_counter()
            loss = sum(detector.losses(images, tgt).values())
            optimisers[name].zero_grad()
            loss.backward()
            optimisers[name].step()
            if step >= 2:  # warm-up steps excluded
                runs[name].append(time.perf_counter() - start)
    return statistics.median(runs["dampened"]), statistics.median(runs["stock"])


def inference(preset_name: str, size: int, rounds: int) -> tuple[float, float]:
    preset = get_preset(preset_name)
    torch.manual_seed(0)
    detector = build_detector(preset, 3, weights="none", min_size=size, max_size=size)
    model = detector.model.eval()
    images = [torch.rand(3, size, size) for _ in range(4)]
    t_d = 0.0  # keep every candidate: the most work for gathering probabilities and features
    if preset.arch == "faster_rcnn":
        model.roi_heads.score_thresh = t_d
    else:
        model.score_thresh = t_d
    runs: dict[str, list[float]] = {"detect": [], "plain": []}
    with torch.no_grad():
        for r in range(rounds + 1):
            start = time.perf_counter()
            detector.detect(images, t_d)
            if r:
                runs["detect"].append(time.perf_counter() - start)
            start = time.perf_counter()
            model(images)
            if r:
                runs["plain"].append(time.perf_counter() - start)
    return statistics.median(runs["detect"]), statistics.median(runs["plain"])


def coreset(n: int, d: int, k: int, centres: int, clusters: int = 0) -> tuple[float, float, float]:
    """Gaussian features, or (clusters > 0) points around that many well-separated cluster centres."""
    rng = np.random.default_rng(0)
    pool = rng.standard_normal((n, d), dtype=np.float32)
    labeled = rng.standard_normal((centres, d), dtype=np.float32)
    if clusters:
        means = rng.standard_normal((clusters, d), dtype=np.float32) * 4
        pool += means[rng.integers(clusters, size=n)]
        labeled += means[rng.integers(clusters, size=centres)]
    matrix = pool.nbytes
    tracemalloc.start()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    k_center_greedy(pool, labeled, k)
    wall = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return wall, peak / 2**20, matrix / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    pool, dim, picks = (100_000, 1024, 1000) if not args.smoke else (2_000, 64, 50)
    if args.smoke:
        args.steps, args.size = 2, 64
    torch.set_num_threads(2)
    print("| measurement | boxal | baseline | ratio | goal |\n| --- | ---: | ---: | ---: | --- |")
    for name in ("faster_rcnn_r18_fpn_lite", "retinanet_r18_fpn_lite"):
        ours, stock = train_steps(name, args.size, args.steps)
        print(
            f"| training step, {name}, 2 images {args.size}px | {ours * 1000:.0f} ms | "
            f"{stock * 1000:.0f} ms (stock heads) | {ours / stock:.3f} | within 5% |",
            flush=True,
        )
    for name in ("faster_rcnn_r18_fpn_lite", "retinanet_r18_fpn_lite"):
        ours, plain = inference(name, args.size, args.steps)
        print(
            f"| pool inference with probs + features, {name}, 4 images | {ours * 1000:.0f} ms | "
            f"{plain * 1000:.0f} ms (model(images)) | {ours / plain:.3f} | within 15% |",
            flush=True,
        )
    for clusters, kind in ((0, "Gaussian"), (200, "200 clusters")):
        wall, peak, matrix = coreset(pool, dim, picks, picks, clusters)
        print(
            f"| coreset K={picks:,} of {pool:,} x {dim:,}-d ({kind}), {picks:,} labeled centres | "
            f"{wall:.1f} s, peak +{peak:.0f} MiB | "
            f"feature matrix {matrix:.0f} MiB | peak {peak / matrix:.2f}x matrix | 10 s, below 2x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
