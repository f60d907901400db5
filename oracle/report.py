"""Experiment outputs: rounds as CSV, plots (mean and spread over seeds), and a markdown summary of the
boxes each arm needed to reach given mAP levels, with the saving of box queries over image queries."""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

AXES = {
    "boxes_obtained": "ground-truth boxes obtained",
    "queries_answered": "queries answered",
    "seconds": "estimated annotator time (s)",
}
LEVELS = (0.5, 0.7, 0.85, 0.9, 0.95)


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    fields = [
        "experiment",
        "dataset",
        "arm",
        "unit",
        "strategy",
        "seed",
        "round",
        "boxes_obtained",
        "queries_answered",
        "seconds",
        "map",
        "map50",
        "model_version",
        "wall_s",
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def curves(rows: list[dict[str, Any]], axis: str, metric: str = "map50") -> dict[str, dict[int, np.ndarray]]:
    """arm -> seed -> (n, 2) array of (x, metric), rounds in order; the initial point starts every arm."""
    out: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    initial = {r["seed"]: r for r in rows if r["arm"] == "initial"}
    for row in sorted(rows, key=lambda r: (r["arm"], r["seed"], r["round"])):
        if row["arm"] in ("initial", "full") or row.get(metric) is None:
            continue
        out[row["arm"]][row["seed"]].append((float(row[axis]), float(row[metric])))
    for arm in out:
        for seed, points in out[arm].items():
            if (
                seed in initial
                and initial[seed].get(metric) is not None
                and points[0][0] > 0
                and axis != "boxes_obtained"
            ):
                points.insert(0, (0.0, float(initial[seed][metric])))
    return {arm: {seed: np.asarray(p) for seed, p in seeds.items()} for arm, seeds in out.items()}


def crossing(curve: np.ndarray, level: float) -> float:
    """The first x at which the piecewise-linear curve reaches ``level`` (nan if it never does)."""
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if y0 >= level:
            return float(x0)
        if y1 >= level:
            return float(x0 + (level - y0) * (x1 - x0) / (y1 - y0))
    return float(curve[-1][0]) if len(curve) and curve[-1][1] >= level else math.nan


def plot(rows: list[dict[str, Any]], out: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    full = [r["map50"] for r in rows if r["arm"] == "full" and r.get("map50") is not None]
    for axis, label in AXES.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
        for arm, seeds in sorted(curves(rows, axis).items()):
            style = "-" if arm.startswith("box") else "--"
            ends = [c[-1][0] for c in seeds.values()]
            grid = np.linspace(min(c[0][0] for c in seeds.values()), min(ends), 50)
            ys = np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in seeds.values()])
            (line,) = ax.plot(
                grid, ys.mean(axis=0), style, label=f"{arm} ({len(seeds)} seed{'s' * (len(seeds) > 1)})"
            )
            if len(seeds) > 1:
                ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.15)
            for c in seeds.values():
                ax.plot(c[:, 0], c[:, 1], "o", color=line.get_color(), markersize=3, alpha=0.6)
        if full:
            ax.axhline(
                float(np.mean(full)), color="grey", linewidth=0.8, linestyle=":", label="fully supervised"
            )
        ax.set_xlabel(label)
        ax.set_ylabel("test mAP@0.5")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out / f"map50_vs_{axis}.png"
        fig.savefig(path)
        plt.close(fig)
        paths.append(path)
    return paths


def summary(rows: list[dict[str, Any]], title: str, command: str) -> str:
    box_curves = curves(rows, "boxes_obtained")
    finals = {arm: float(np.mean([c[-1][1] for c in seeds.values()])) for arm, seeds in box_curves.items()}
    full = [r["map50"] for r in rows if r["arm"] == "full" and r.get("map50") is not None]
    reference = float(np.mean(full)) if full else max(finals.values(), default=0.0)
    ref_name = "the fully supervised model's mAP@0.5" if full else "the best final mAP@0.5 of any arm"
    lines = [
        f"# {title}",
        "",
        f"Command: `{command}`",
        "",
        f"Levels are fractions of {ref_name} ({reference:.3f}). Cells: ground-truth boxes obtained when "
        "the arm's test mAP@0.5 first reached the level (linear between rounds; mean over seeds, "
        "min-max in brackets); '-' where it never did.",
        "",
    ]
    arms = sorted(box_curves)
    lines.append("| level | mAP@0.5 | " + " | ".join(arms) + " | box saving vs image |")
    lines.append("| --- | ---: | " + " | ".join("---:" for _ in arms) + " | ---: |")
    for level in LEVELS:
        target = level * reference
        cells, best = [], {"box": math.nan, "image": math.nan}
        for arm in arms:
            xs = [crossing(c, target) for c in box_curves[arm].values()]
            mean = float(np.mean(xs)) if xs and not any(math.isnan(x) for x in xs) else math.nan
            unit = arm.split("/")[0]
            if not math.isnan(mean) and (math.isnan(best[unit]) or mean < best[unit]):
                best[unit] = mean
            spread = f" [{min(xs):.0f}-{max(xs):.0f}]" if len(xs) > 1 and not math.isnan(mean) else ""
            cells.append("-" if math.isnan(mean) else f"{mean:.0f}{spread}")
        saving = (
            "-"
            if math.isnan(best["box"]) or math.isnan(best["image"])
            else f"{1 - best['box'] / best['image']:.0%}"
        )
        lines.append(f"| {level:.0%} | {target:.3f} | " + " | ".join(cells) + f" | {saving} |")
    lines += [
        "",
        "Final points (mean over seeds):",
        "",
        "| arm | rounds | boxes obtained | queries answered | annotator hours | mAP@0.5 | mAP@[.5:.95] |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm in arms:
        last = [
            max((r for r in rows if r["arm"] == arm and r["seed"] == s), key=lambda r: r["round"])
            for s in sorted({r["seed"] for r in rows if r["arm"] == arm})
        ]
        lines.append(
            f"| {arm} | {np.mean([r['round'] for r in last]):.0f} | "
            f"{np.mean([r['boxes_obtained'] for r in last]):.0f} | "
            f"{np.mean([r['queries_answered'] for r in last]):.0f} | "
            f"{np.mean([r['seconds'] for r in last]) / 3600:.2f} | "
            f"{np.mean([r['map50'] for r in last]):.3f} | "
            f"{np.mean([r['map'] for r in last]):.3f} |"
        )
    initial = [r for r in rows if r["arm"] == "initial"]
    if initial:
        lines.append(
            f"| initial model | 1 | {np.mean([r['boxes_obtained'] for r in initial]):.0f} | 0 | 0 | "
            f"{np.mean([r['map50'] for r in initial]):.3f} | {np.mean([r['map'] for r in initial]):.3f} |"
        )
    if full:
        full_rows = [r for r in rows if r["arm"] == "full"]
        lines.append(
            f"| fully supervised | 1 | {np.mean([r['boxes_obtained'] for r in full_rows]):.0f} | - | - | "
            f"{np.mean(full):.3f} | {np.mean([r['map'] for r in full_rows]):.3f} |"
        )
    return "\n".join(lines) + "\n"


def write_all(rows: list[dict[str, Any]], out: Path, title: str, command: str) -> None:
    write_csv(rows, out / "rounds.csv")
    plot(rows, out, title)
    (out / "summary.md").write_text(summary(rows, title, command))


def merge_runs(runs: list[Path], out: Path, command: str) -> list[dict[str, Any]]:
    """Merge the rounds of runs of one experiment made separately (seeds run apart, on other machines or
    at other times) into one report under ``out``: rounds.jsonl, CSV, plots and a summary whose spread
    covers every seed. Runs must share the experiment's settings and may not repeat a seed."""
    settings, rows, commands, seen = None, [], [], {}
    for run in runs:
        log = run / "rounds.jsonl"
        if not log.is_file():
            raise ValueError(f"{run} holds no rounds.jsonl: not an experiment directory")
        spec = json.loads((run / "experiment.json").read_text())
        seeds = spec.pop("seeds")
        if settings is None:
            settings = spec
        elif spec != settings:
            changed = sorted(k for k in spec.keys() | settings.keys() if spec.get(k) != settings.get(k))
            raise ValueError(f"{run} is a different experiment from {runs[0]}: {', '.join(changed)} differ")
        for seed in seeds:
            if seed in seen:
                raise ValueError(f"seed {seed} is in both {seen[seed]} and {run}")
            seen[seed] = run
        rows += [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        summary_file = run / "summary.md"
        header = summary_file.read_text().split("`") if summary_file.is_file() else []
        commands.append(header[1] if len(header) > 1 else str(run))
    out.mkdir(parents=True, exist_ok=True)
    assert settings is not None
    (out / "experiment.json").write_text(json.dumps({**settings, "seeds": sorted(seen)}, indent=2) + "\n")
    (out / "rounds.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    title = f"{settings['name']}: box vs image queries ({settings['dataset']}), seeds {sorted(seen)}"
    write_all(rows, out, title, "`; `".join([*commands, command]))
    return rows
