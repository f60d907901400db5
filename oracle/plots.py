"""Plots of an experiment: mAP@0.5 as a percentage of the fully supervised reference against each cost axis
(mean over seeds, range shaded, every seed's rounds as dots), and against the round, the control included."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

AXIS_LABELS = {
    "boxes_obtained": "ground-truth boxes obtained (background answers free)",
    "queries_answered": "queries answered",
    "seconds": "estimated annotator time (s)",
}


def style(arm: str) -> str:
    return "-" if arm.startswith("box") else ("--" if arm.startswith("image") else ":")


def _axes(title: str, xlabel: str, reference: bool):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    of = "fully supervised" if reference else "the best arm"
    ax.axhline(100, color="grey", linewidth=0.8, linestyle=":", label=f"{of} (100%)")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"test mAP@0.5, % of {of}")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    return fig, ax


def _save(fig: Any, ax: Any, path: Path) -> Path:
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot(rows: list[dict[str, Any]], out: Path, title: str, curves: Callable[..., Any]) -> list[Path]:
    """One PNG per cost axis, and one against the round; ``curves`` is oracle.report.curves."""
    paths = []
    reference = any(r["arm"] == "full" for r in rows)
    for axis, label in AXIS_LABELS.items():
        fig, ax = _axes(title, label, reference)
        for arm, seeds in sorted(curves(rows, axis).items()):
            ends = [c[-1][0] for c in seeds.values()]
            grid = np.linspace(min(c[0][0] for c in seeds.values()), min(ends), 50)
            ys = 100 * np.stack([np.interp(grid, c[:, 0], c[:, 1]) for c in seeds.values()])
            (line,) = ax.plot(
                grid,
                ys.mean(axis=0),
                style(arm),
                label=f"{arm} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})",
            )
            if len(seeds) > 1:
                ax.fill_between(grid, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.15)
            for c in seeds.values():
                ax.plot(c[:, 0], 100 * c[:, 1], "o", color=line.get_color(), markersize=3, alpha=0.6)
        paths.append(_save(fig, ax, out / f"map50_vs_{axis}.png"))
    fig, ax = _axes(title, "round (the control trains as the arms do, without new labels)", reference)
    by: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:  # the reference's rounds are its own schedule's: it is the 100% line here
        if row["arm"] not in ("initial", "full") and row.get("map50_of_full") is not None:
            by[row["arm"]][row["round"]].append(100 * row["map50_of_full"])
    for arm, rounds in sorted(by.items()):
        numbers = sorted(rounds)
        means = [float(np.mean(rounds[n])) for n in numbers]
        ax.plot(numbers, means, style(arm) + "o", markersize=3, label=arm)
    paths.append(_save(fig, ax, out / "map50_vs_round.png"))
    return paths
