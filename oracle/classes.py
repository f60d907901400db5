"""Per-class quality of an experiment: each round's AP and box counts per class (``classes.csv``) and a plot
of AP@0.5 per class against boxes obtained, arm by arm (mean over seeds), the fully supervised
reference's per-class AP@0.5 drawn as a line. Class imbalance is where active learning should help most."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from oracle.plots import style

FIELDS = [
    "arm",
    "seed",
    "round",
    "boxes_obtained",
    "class",
    "ap",
    "ap50",
    "labeled",
    "noisy",
    "queued",
    "test_boxes",
]


def class_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (arm, seed, round, class), from the rounds' ``per_class``."""
    out = []
    for row in sorted(rows, key=lambda r: (r["arm"], r["seed"], r["round"])):
        for entry in row.get("per_class") or []:
            out.append({**{k: row[k] for k in ("arm", "seed", "round", "boxes_obtained")}, **entry})
    return out


def write_classes(rows: list[dict[str, Any]], out: Path, title: str) -> Path | None:
    """classes.csv and ap50_per_class.png; None where no round recorded per-class results."""
    flat = class_rows(rows)
    if not flat:
        return None
    with (out / "classes.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(flat)
    return _plot(flat, out / "ap50_per_class.png", title)


def _plot(flat: list[dict[str, Any]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["class"] for r in flat))
    columns = min(4, len(names))
    lines = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.6 * lines), dpi=110, squeeze=False)
    # (arm, class) -> round -> [(boxes obtained, AP@0.5)] over seeds
    points: dict[tuple[str, str], dict[int, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in flat:
        if r["ap50"] is not None:
            points[(r["arm"], r["class"])][r["round"]].append((r["boxes_obtained"], r["ap50"]))
    for ax, name in zip(axes.flat, names, strict=False):
        tests = {r["test_boxes"] for r in flat if r["class"] == name}
        ax.set_title(f"{name} ({max(tests)} test boxes)", fontsize=9)
        ax.grid(alpha=0.3)
        for arm in sorted({a for a, c in points if c == name}):
            rounds = points[(arm, name)]
            xs = [float(np.mean([p[0] for p in rounds[n]])) for n in sorted(rounds)]
            ys = [float(np.mean([p[1] for p in rounds[n]])) for n in sorted(rounds)]
            if arm == "full":
                ax.axhline(ys[-1], color="grey", linestyle=":", linewidth=1, label="fully supervised")
            elif arm != "initial":
                ax.plot(xs, ys, style(arm) + "o", markersize=2.5, label=arm)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("test AP@0.5")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(
        f"{title}: AP@0.5 per class against ground-truth boxes obtained (mean over seeds)", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
