"""The round-three goal (README, "Which unit to ask for", written before its runs) read against a report's
rows, so that the README's verdicts are the report's, never retyped:

1. ``auto`` at or above the best fixed arm (box, drawn image or review) at every round of queries, on
   ground-truth boxes obtained and on annotator seconds: per round and seed, every fixed arm's curve is
   read at auto's cost (linear between its rounds, as oracle/equal_boxes.py reads image arms); the best is
   the one with the highest mean among those whose runs cover that cost on every seed. At or above: the
   mean of the seed-by-seed gaps is not below zero, or their range reaches zero.
2. The box arm above the control at every round of queries (mean over seeds, paired by seed).
3. ``auto`` or the box arm needing at least 30% fewer boxes than the best image arm (drawn or reviewed) to
   hold the highest share of the reference that every labeling arm holds at its last round on every seed
   (to the whole percent below), as oracle/levels.py's sustained cost, paired by seed.

Rows carry ``map50_of_full`` (oracle.report.relative).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from oracle.equal_boxes import best_covering, round_points
from oracle.levels import sustained
from oracle.report import curves, initial_models, relative

FEWER_BOXES = 0.3  # the third line's margin
GOAL_AXES = {"boxes_obtained": "boxes", "seconds": "annotator seconds"}
IMAGE_UNITS = ("image", "review")


def _units(rows: list[dict[str, Any]]) -> dict[str, str]:
    return {r["arm"]: r.get("unit") or "-" for r in rows}


def _at_or_above(gaps: Sequence[float]) -> bool:
    return float(np.mean(gaps)) >= 0 or max(gaps) >= 0


def _gap_text(gaps: Sequence[float]) -> str:
    spread = f" [{min(gaps) * 100:+.1f} to {max(gaps) * 100:+.1f}]" if len(gaps) > 1 else ""
    return f"{np.mean(gaps) * 100:+.1f}{spread}"


def auto_against_fixed(rows: list[dict[str, Any]], axis: str) -> list[dict[str, Any]]:
    """Per auto arm and round of queries: auto's mean share, the best fixed arm at its cost and the gaps
    seed by seed (``best`` None where no fixed arm's runs cover that cost on every seed)."""
    units = _units(rows)
    fixed = {a: c for a, c in curves(rows, axis).items() if units.get(a) in ("box", *IMAGE_UNITS)}
    out = []
    for arm in sorted(a for a, u in units.items() if u == "auto"):
        for number, points in sorted(round_points(rows, arm, axis).items()):
            points = dict(sorted(points.items()))
            found = best_covering(fixed, points)
            mine = [y for _, y in points.values()]
            gaps = [] if found is None else [m - t for m, t in zip(mine, found[1], strict=True)]
            out.append(
                {"arm": arm, "round": number, "cost": float(np.mean([x for x, _ in points.values()])),
                 "share": float(np.mean(mine)), "best": None if found is None else found[0],
                 "best_share": None if found is None else float(np.mean(found[1])), "gaps": gaps}
            )  # fmt: skip
    return out


def box_against_control(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per box arm and round of queries: its mean share, the control's on the same seeds, and the gaps."""
    units = _units(rows)
    control = round_points(rows, "control", "boxes_obtained")
    out = []
    for arm in sorted(a for a, u in units.items() if u == "box"):
        for number, points in sorted(round_points(rows, arm, "boxes_obtained").items()):
            seeds = [s for s in sorted(points) if s in control.get(number, {})]
            if not seeds:
                continue
            gaps = [points[s][1] - control[number][s][1] for s in seeds]
            out.append({"arm": arm, "round": number, "gaps": gaps})
    return out


def held_level(rows: list[dict[str, Any]]) -> float | None:
    """The highest whole-percent share of the reference every labeling arm holds at its last round on
    every seed (None without such arms)."""
    units = _units(rows)
    lasts = [
        float(c[-1][1])
        for a, seeds in curves(rows, "boxes_obtained").items()
        if units.get(a) in ("auto", "box", *IMAGE_UNITS)
        for c in seeds.values()
    ]
    return math.floor(round(min(lasts) * 100, 6)) / 100 if lasts else None  # 0.7 stored as 0.69999


def fewer_boxes(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """At held_level: the cheaper of auto and the box arm against the cheapest image arm, on boxes, with
    the saving seed by seed (1 - its boxes / the image arm's)."""
    level = held_level(rows)
    if level is None:
        return None
    units = _units(rows)
    cost = _level_costs(rows, "boxes_obtained", level)

    def cheapest(kinds: tuple[str, ...]) -> str | None:
        return min(
            (a for a in cost if units[a] in kinds), key=lambda a: float(np.mean(cost[a])), default=None
        )

    ours, image = cheapest(("auto", "box")), cheapest(IMAGE_UNITS)
    if ours is None or image is None:
        return None
    savings = [1 - b / i if i > 0 else 0.0 for b, i in zip(cost[ours], cost[image], strict=True)]
    return {"level": level, "ours": ours, "image": image, "ours_boxes": cost[ours],
            "image_boxes": cost[image], "savings": savings}  # fmt: skip


def verdicts(rows: list[dict[str, Any]]) -> dict[str, bool | None]:
    """Each goal line held (True), missed (False) or not measurable here (None)."""
    out: dict[str, bool | None] = {}
    for axis in GOAL_AXES:
        everything = auto_against_fixed(rows, axis)
        compared = [r for r in everything if r["best"] is not None]
        if any(not _at_or_above(r["gaps"]) for r in compared):
            out[f"auto_{axis}"] = False  # a round below is a miss, whatever rounds no fixed arm covers
        elif not everything or len(compared) < len(everything):
            out[f"auto_{axis}"] = None
        else:
            out[f"auto_{axis}"] = True
    control = box_against_control(rows)
    out["box_over_control"] = all(np.mean(r["gaps"]) > 0 for r in control) if control else None
    saving = fewer_boxes(rows)
    out["fewer_boxes"] = None if saving is None else float(np.mean(saving["savings"])) >= FEWER_BOXES
    return out


def _word(held: bool | None) -> str:
    return {True: "**held**", False: "**missed**", None: "not measurable here"}[held]


def goal_section(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: the goal's three lines read against these rows; empty without an auto arm."""
    if "auto" not in _units(rows).values():
        return []
    held = verdicts(rows)
    lines = [
        "",
        "## Read against the round-three goal (README, written before the runs)",
        "",
        "Shares of mAP@0.5 in % as above, mean over seeds; gaps in points, mean [range] over seeds, paired "
        "by seed.",
    ]
    for axis, name in GOAL_AXES.items():
        lines += [
            "",
            f"**auto at or above the best fixed arm at every round, on {name}**: "
            + _word(held[f"auto_{axis}"]),
            "",
            f"| auto arm | round | {name} | auto | best fixed arm there | gap | at or above |",
            "| --- | ---: | ---: | ---: | --- | ---: | --- |",
        ]
        for r in auto_against_fixed(rows, axis):
            if r["best"] is None:
                lines.append(
                    f"| {r['arm']} | {r['round']} | {r['cost']:,.0f} | {r['share']:.1%} | - (no fixed arm's "
                    "runs cover this cost on every seed) | - | - |"
                )
                continue
            lines.append(
                f"| {r['arm']} | {r['round']} | {r['cost']:,.0f} | {r['share']:.1%} | {r['best']}: "
                f"{r['best_share']:.1%} | {_gap_text(r['gaps'])} | "
                f"{'yes' if _at_or_above(r['gaps']) else 'no'} |"
            )
    lines += [
        "",
        f"**The box arm above the control at every round**: {_word(held['box_over_control'])}",
        "",
        "| box arm | round | gap over the control |",
        "| --- | ---: | ---: |",
        *(f"| {r['arm']} | {r['round']} | {_gap_text(r['gaps'])} |" for r in box_against_control(rows)),
    ]
    saving = fewer_boxes(rows)
    lines += [
        "",
        f"**At least {FEWER_BOXES:.0%} fewer boxes than the best image arm**: {_word(held['fewer_boxes'])}",
    ]
    if saving is not None:
        spread = f" [{min(saving['savings']):.0%} to {max(saving['savings']):.0%}]"
        lines += [
            "",
            "The highest share every labeling arm holds at its last round on every seed: "
            f"{saving['level']:.0%}. "
            f"To hold it, {saving['ours']} needed {np.mean(saving['ours_boxes']):,.0f} boxes and "
            f"{saving['image']} {np.mean(saving['image_boxes']):,.0f}: a saving of "
            f"{np.mean(saving['savings']):.0%}{spread} seed by seed.",
        ]
    return lines


def _level_costs(rows: list[dict[str, Any]], axis: str, level: float) -> dict[str, list[float]]:
    """Per labeling arm run on every seed, its cost on ``axis`` to hold ``level``, seed by seed."""
    units = _units(rows)
    by = curves(rows, axis)
    seeds = sorted({s for c in by.values() for s in c})
    return {
        a: [sustained(c[s], level) for s in seeds]
        for a, c in by.items()
        if units.get(a) in ("auto", "box", *IMAGE_UNITS) and set(c) == set(seeds)
    }


def _cheapest(rows: list[dict[str, Any]], axis: str, level: float) -> list[tuple[str, float]]:
    """The labeling arms by their mean cost on ``axis`` to hold ``level`` (on every seed), cheapest first."""
    means = {a: float(np.mean(c)) for a, c in _level_costs(rows, axis, level).items()}
    return sorted(((a, c) for a, c in means.items() if not math.isnan(c)), key=lambda ac: ac[1])


def readme_cells(rows: list[dict[str, Any]]) -> str:
    """The README table's cells for one experiment, after its first (the strength's name) and before its
    last (the link): the first model's share, which arm paid on each axis at the level every arm holds, and
    the goal's lines; docs tests compare them with the README, so the README's numbers are the report's."""
    rows, _ = relative(rows)
    first = [float(r["map50_of_full"]) for r in initial_models(rows).values() if r.get("map50_of_full")]
    level = held_level(rows)
    paid = []
    for axis, name, unit in (("boxes_obtained", "boxes", " boxes"), ("seconds", "annotator seconds", " s")):
        ranked = [] if level is None else _cheapest(rows, axis, level)
        if len(ranked) < 2:
            paid.append(f"on {name}: -")
            continue
        (best, cost), (second, other) = ranked[0], ranked[1]
        fewer = f"{1 - cost / other:.0%} fewer than {second}" if other > 0 else f"{second} at no cost either"
        paid.append(f"on {name}: {best}, {cost:,.0f}{unit} ({fewer})")
    held = verdicts(rows)
    share = f"{np.mean(first):.0%} [{min(first):.0%}-{max(first):.0%}]" if first else "-"
    holds = "-" if level is None else f"{level:.0%}"
    goal = (
        f"auto at or above the best fixed arm: {_plain(held['auto_boxes_obtained'])} on boxes, "
        f"{_plain(held['auto_seconds'])} on seconds; box arm above the control: "
        f"{_plain(held['box_over_control'])}; 30% fewer boxes than the best image arm: "
        f"{_plain(held['fewer_boxes'])}"
    )
    return f"| {share} | {holds} | {'; '.join(paid)} | {goal} |"


def _plain(held: bool | None) -> str:
    return {True: "held", False: "missed", None: "not measured"}[held]


def goal_reading(experiments: dict[str, list[dict[str, Any]]], middle: str) -> str:
    """The README's one-sentence reading of the goal against every experiment at once (report name ->
    its merged rows; ``middle`` names the experiment the third line is read on): a line is missed where any
    experiment misses it, named, not measured where any cannot measure it, else held."""
    held = {name: verdicts(relative(rows)[0]) for name, rows in experiments.items()}

    def line(key: str, names: Sequence[str]) -> str:
        missed = [n for n in names if held[n][key] is False]
        unmeasured = [n for n in names if held[n][key] is None]
        if missed:
            return f"missed ({', '.join(missed)})"
        return f"not measured ({', '.join(unmeasured)})" if unmeasured else "held"

    every = list(experiments)
    return (
        "Read against the table's experiments: auto at or above the best fixed arm: "
        f"on boxes {line('auto_boxes_obtained', every)}, on seconds {line('auto_seconds', every)}; "
        f"box arm above the control: {line('box_over_control', every)}; {FEWER_BOXES:.0%} fewer boxes than "
        f"the best image arm on the middle experiment: {line('fewer_boxes', [middle])}."
    )
