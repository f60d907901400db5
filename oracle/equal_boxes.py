"""Box arms against the image arms at equal boxes obtained: per round of queries and seed, the box arm's
mAP@0.5 (% of the reference) beside the whole-image arm's (drawn or reviewed) with the highest mean at
the same number of boxes, each seed read off that seed's curve (linear between its rounds), paired seed
by seed. An image arm whose runs ended below those boxes, or started above them, on some seed is not read
there; where no image arm covers them the round is not compared, and the table says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from oracle.levels import value_at
from oracle.report import curves

UNCOVERED = "no image arm's runs cover {} boxes on every seed"


def round_points(
    rows: list[dict[str, Any]], arm: str, axis: str = "boxes_obtained"
) -> dict[int, dict[int, tuple[float, float]]]:
    """round -> seed -> (cost on ``axis``, mAP@0.5 as a share of the reference) of ``arm``'s rounds of
    queries (every round after the first)."""
    out: dict[int, dict[int, tuple[float, float]]] = {}
    for row in rows:
        if row["arm"] == arm and row["round"] > 1 and row.get("map50_of_full") is not None:
            out.setdefault(row["round"], {})[row["seed"]] = (float(row[axis]), float(row["map50_of_full"]))
    return out


def best_covering(
    image: dict[str, dict[int, np.ndarray]], points: dict[int, tuple[float, float]]
) -> tuple[str, list[float]] | None:
    """Among the arms whose curves cover each seed's cost, the one with the highest mean mAP@0.5 there,
    and its value per seed (in ``points``' seed order)."""
    read = {
        arm: [value_at(seeds[seed], x) if seed in seeds else math.nan for seed, (x, _) in points.items()]
        for arm, seeds in image.items()
    }
    covering = {arm: values for arm, values in read.items() if not any(math.isnan(v) for v in values)}
    if not covering:
        return None
    best = max(covering, key=lambda arm: float(np.mean(covering[arm])))
    return best, covering[best]


def _box_arm_lines(
    arm: str, rounds: dict[int, dict[int, tuple[float, float]]], image: dict[str, dict[int, np.ndarray]]
) -> tuple[list[str], int, int]:
    """One box arm's rows, in how many of its rounds of queries an image arm could be compared with it,
    and in how many it was above the best image arm."""
    lines, compared, above = [], 0, 0
    for number in sorted(rounds):
        points = dict(sorted(rounds[number].items()))
        boxes = f"{np.mean([x for x, _ in points.values()]):.0f}"
        best = best_covering(image, points)
        if best is None:
            lines.append(f"| {arm} | {number} | {boxes} | - | - | - ({UNCOVERED.format('these')}) |")
            continue
        name, values = best
        gaps = [mine - theirs for (_, mine), theirs in zip(points.values(), values, strict=True)]
        spread = f" [{min(gaps) * 100:+.1f} to {max(gaps) * 100:+.1f}]" if len(gaps) > 1 else ""
        compared += 1
        above += float(np.mean(gaps)) > 0
        lines.append(
            f"| {arm} | {number} | {boxes} | {np.mean([m for _, m in points.values()]):.1%} | "
            f"{name}: {np.mean(values):.1%} | {np.mean(gaps) * 100:+.1f}{spread} |"
        )
    return lines, compared, above


def equal_boxes_section(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: each box arm against the best image arm at the same boxes obtained, round by round; empty
    without a box arm and an image arm. ``rows`` carry ``map50_of_full`` (oracle.report.relative)."""
    units = {r["arm"]: r.get("unit") for r in rows}
    box_arms = sorted(a for a, u in units.items() if u == "box")
    by_arm = curves(rows, "boxes_obtained")
    image = {a: by_arm[a] for a in sorted(by_arm) if units.get(a) in ("image", "review")}
    if not box_arms or not image:
        return []
    lines = [
        "",
        "## At equal boxes obtained: each box arm against the best image arm",
        "",
        "Per round of queries: the box arm's mAP@0.5 beside the whole-image arm's (drawn or reviewed) with "
        "the highest mean at the same boxes obtained, each seed's read off that seed's curve (linear "
        "between its rounds), as % of full, mean over seeds; the gap is the box arm's minus it in points, "
        "paired seed by seed: mean [range].",
        "",
        "| box arm | round | boxes obtained | box arm | best image arm at those boxes | gap (points) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for arm in box_arms:
        rounds = round_points(rows, arm)
        own, compared, above = _box_arm_lines(arm, rounds, image)
        lines += own
        verdicts.append(
            f"- {arm}: above the best image arm in {above} of its {len(rounds)} rounds of queries"
            + (
                f" ({len(rounds) - compared} not compared: {UNCOVERED.format('its')})."
                if compared < len(rounds)
                else "."
            )
        )
    return [*lines, "", *verdicts]
