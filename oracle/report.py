"""Experiment outputs: rounds as JSON lines and CSV, the cost each arm needed per level as CSV, plots
(oracle/plots.py), and a markdown summary whose every number the CSVs reproduce.

Levels are percentages of the fully supervised reference: per seed, the test mAP@0.5 of the same model on
the whole pool fully labeled, trained to convergence (the last round of the ``full`` project; the summary
states its schedule and whether it converged). A run
without it falls back to the best final mAP@0.5 of any arm, and says so. A level counts as reached from the
cost at which the curve stays at or above it for the rest of the run (oracle/levels.py); the first-touch
figure of earlier reports stands beside it, labeled. The levels are 80%, 90% and 95% unless the report
names others (``boxal report --level``: on a data set where no arm comes near 80% within the budget, lower
levels are where arms can still be compared).
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from oracle.levels import first_touch, sustained, value_at

AXES = {
    "boxes_obtained": "ground-truth boxes obtained (background and duplicate answers free)",
    "queries_answered": "queries answered (every queried box or image counts, as in the paper's plots)",
    "seconds": "estimated annotator seconds (oracle/cost.py)",
}
LEVELS = (0.8, 0.9, 0.95)
LYU_SHARE = 0.2  # Lyu et al. (CVPR 2023): full-supervision VOC quality with 19% of the boxes
REFERENCE_ARMS = ("initial", "control", "full")
ROUND_FIELDS = [
    "experiment", "dataset", "arm", "unit", "strategy", "seed", "round", "boxes_obtained",
    "queries_answered", "seconds", "map", "map50", "map50_of_full", "model_version", "notice", "wall_s",
    "unit_served", "unit_reason",
]  # fmt: skip


def references(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Per seed, the fully supervised model's mAP@0.5 (its last round)."""
    last: dict[int, dict[str, Any]] = {}
    for row in rows:
        later = row["seed"] not in last or row["round"] > last[row["seed"]]["round"]
        if row["arm"] == "full" and row.get("map50") is not None and later:
            last[row["seed"]] = row
    return {seed: float(row["map50"]) for seed, row in last.items()}


def relative(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """Rows with ``map50_of_full`` (mAP@0.5 over the reference), and what the reference is."""
    refs: dict[int, float] = references(rows)
    if refs and min(refs.values()) > 0:
        what = (
            "the fully supervised model's mAP@0.5 (the same model on every pool box, trained to "
            "convergence: its section below), per seed"
        )
    else:
        why = (
            "its fully supervised reference scored 0"
            if refs
            else "this run has no fully supervised reference"
        )
        finals = [r["map50"] for r in rows if r["arm"] not in REFERENCE_ARMS and r.get("map50") is not None]
        best = max(finals, default=0.0)
        refs = defaultdict(lambda: best or 1.0)
        if best > 0:
            what = f"the best mAP@0.5 of any arm ({best:.3f}): {why}"
        elif not finals:  # a run of the initial model and the control alone (a probe of the first model)
            what = f"mAP@0.5 itself (no arm that obtains labels ran; {why})"
        else:
            what = f"mAP@0.5 itself (no arm scored above 0; {why})"
    out = [
        {**row, "map50_of_full": None if row.get("map50") is None else row["map50"] / refs[row["seed"]]}
        for row in rows
    ]
    return out, what


def curves(
    rows: list[dict[str, Any]], axis: str, metric: str = "map50_of_full"
) -> dict[str, dict[int, np.ndarray]]:
    """arm -> seed -> (n, 2) array of (cost, metric), rounds in order. On the queries and seconds axes
    every arm starts at the initial model (cost 0); on boxes its first round already has the initial set."""
    out: dict[str, dict[int, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    initial = initial_models(rows)
    for row in sorted(rows, key=lambda r: (r["arm"], r["seed"], r["round"])):
        if row["arm"] in REFERENCE_ARMS or row.get(metric) is None:
            continue
        out[row["arm"]][row["seed"]].append((float(row[axis]), float(row[metric])))
    for arm in out:
        for seed, points in out[arm].items():
            start = initial.get(seed)
            if (
                start is not None
                and start.get(metric) is not None
                and points[0][0] > 0
                and axis != "boxes_obtained"
            ):
                points.insert(0, (0.0, float(start[metric])))
    return {arm: {seed: np.asarray(p) for seed, p in seeds.items()} for arm, seeds in out.items()}


def initial_models(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Per seed, the initial model every arm adopts: the initial project's last round (it trains several
    when it trains to convergence)."""
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["arm"] == "initial" and (row["seed"] not in out or row["round"] > out[row["seed"]]["round"]):
            out[row["seed"]] = row
    return out


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """The levels a report tabulates, in order; a ValueError names one that is not a share above 0."""
    for level in levels:
        if not 0 < level <= 2:
            raise ValueError(f"level {level} is not a share of the reference in (0, 2] (0.9 means 90%)")
    return tuple(sorted(set(levels)))


def level_rows(rows: list[dict[str, Any]], levels: Sequence[float] = LEVELS) -> list[dict[str, Any]]:
    """Per axis, level, arm and seed: the sustained and the first-touch cost (levels.csv)."""
    out = []
    for axis in AXES:
        for arm, seeds in sorted(curves(rows, axis).items()):
            for seed, curve in sorted(seeds.items()):
                for level in levels:
                    out.append(
                        {"axis": axis, "level": level, "arm": arm, "seed": seed,
                         "sustained": sustained(curve, level), "first_touch": first_touch(curve, level)}
                    )  # fmt: skip
    return out


def _unit(rows: list[dict[str, Any]], arm: str) -> str:
    return next(r["unit"] for r in rows if r["arm"] == arm)


def _seeds(rows: list[dict[str, Any]], arm: str | None = None) -> list[int]:
    """The seeds an arm ran (every seed of the rows without one)."""
    return sorted({r["seed"] for r in rows if arm is None or r["arm"] == arm})


def _header(rows: list[dict[str, Any]], arm: str) -> str:
    """An arm's column name; one run on fewer seeds than the report holds (runs merged part-way) says which,
    since its figures average those seeds only."""
    seeds = _seeds(rows, arm)
    if seeds == _seeds(rows):
        return arm
    return f"{arm} (seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))} only)"


def _cell(values: list[float]) -> str:
    if not values or any(math.isnan(v) for v in values):
        return "-"
    spread = f" [{min(values):.0f}-{max(values):.0f}]" if len(values) > 1 else ""
    return f"{np.mean(values):.0f}{spread}"


def _best(by_arm: dict[str, list[float]], arms: list[str]) -> str | None:
    """The arm with the lowest mean cost among those that reached the level in every seed."""
    done = [a for a in arms if by_arm.get(a) and not any(math.isnan(v) for v in by_arm[a])]
    return min(done, key=lambda a: float(np.mean(by_arm[a])), default=None)


def _saving(box_cost: float, image_cost: float) -> float | None:
    """The box arm's saving as a fraction of the image arm's cost; None where that cost is zero and the
    box arm's is not (a level both reach at no cost is no saving: 0)."""
    if image_cost > 0:
        return 1 - box_cost / image_cost
    return 0.0 if box_cost == 0 else None


def _saving_text(pairs: list[float], other: str = "image") -> str:
    """The mean paired saving with its range; where the box arm cost more than twice the image arm's, as
    that multiple (a saving of -6730% reads better as 68x the image arm's cost)."""
    if np.mean(pairs) >= -1:
        spread = f" [{min(pairs):.0%} to {max(pairs):.0%}]" if len(pairs) > 1 else ""
        return f"{np.mean(pairs):.0%}{spread}"
    ratios = [1 - p for p in pairs]  # box cost / image cost
    spread = f" [{min(ratios):.1f}x to {max(ratios):.1f}x]" if len(ratios) > 1 else ""
    return f"{np.mean(ratios):.1f}x the {other} arm's cost{spread}"


def _paired(
    by_arm: dict[str, list[float]], arms: list[str], others: list[str], kinds: tuple[str, str]
) -> str:
    """The paired per-seed saving of the cheapest of ``arms`` over the cheapest of ``others`` (each among
    those holding the level in every seed); ``kinds`` name the two sides where one holds it and the other
    does not."""
    best, other = _best(by_arm, arms), _best(by_arm, others)
    if arms and others and bool(best) != bool(other):  # one side holds it in every seed
        return f"- (no {kinds[1] if best else kinds[0]} arm holds it in every seed)"
    if not (best and other):
        return "-"
    paired = [_saving(b, i) for b, i in zip(by_arm[best], by_arm[other], strict=True)]
    pairs = [p for p in paired if p is not None]
    if len(pairs) < len(paired):  # no fraction of nothing: the other arm was there for free
        return f"{best} vs {other}: - (the {kinds[1]} arm reached it at no cost)"
    return f"{best} vs {other}: {_saving_text(pairs, kinds[1])}"


def level_table(
    rows: list[dict[str, Any]], reached: list[dict[str, Any]], axis: str, field: str
) -> list[str]:
    """Markdown: cost per level and arm (mean [min-max] over seeds), the paired per-seed saving of the
    best box arm over the best whole-image arm (drawn or reviewed), and where image review ran, of the
    best review arm over the best arm drawing whole images; ``reached`` holds level_rows."""
    arms = sorted({r["arm"] for r in reached if r["axis"] == axis})
    seeds = {r["seed"] for r in reached if r["axis"] == axis}
    # the saving pairs seeds, so only arms run on every seed compete for "best" (runs merged part-way)
    complete = [
        a for a in arms if {r["seed"] for r in reached if r["arm"] == a and r["axis"] == axis} == seeds
    ]
    box_arms = [a for a in complete if _unit(rows, a) == "box"]
    drawn = [a for a in complete if _unit(rows, a) == "image"]
    reviews = [a for a in complete if _unit(rows, a) == "review"]
    review_column = " review vs best drawn image: saving per seed |" if reviews and drawn else ""
    lines = [
        "| level | "
        + " | ".join(_header(rows, a) for a in arms)
        + " | best box vs best image: saving per seed |"
        + review_column,
        "| --- | " + " | ".join("---:" for _ in arms) + " | --- |" + " --- |" * bool(review_column),
    ]
    for level in sorted({r["level"] for r in reached if r["axis"] == axis}):
        picked = [r for r in reached if r["axis"] == axis and r["level"] == level]
        by_arm = {
            a: [r[field] for r in sorted(picked, key=lambda r: r["seed"]) if r["arm"] == a] for a in arms
        }
        cells = [_paired(by_arm, box_arms, drawn + reviews, ("box", "image"))]
        if review_column:
            cells.append(_paired(by_arm, reviews, drawn, ("review", "drawn image")))
        lines.append(
            f"| {level:.0%} | "
            + " | ".join(_cell(by_arm[a]) for a in arms)
            + " | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def both_axes_table(rows: list[dict[str, Any]], reached: list[dict[str, Any]]) -> list[str]:
    """Markdown: per level and arm, the ground-truth boxes and the annotator seconds it needed to hold the
    level (mean [min-max] over seeds): what a level costs on either axis a team pays by."""
    lines = [
        "Ground-truth boxes obtained and estimated annotator seconds each arm needed to hold a level "
        "(mean [min-max] over seeds; '-' where a seed's last round is below it).",
        "",
        "| level | arm | boxes obtained | annotator seconds |",
        "| ---: | --- | ---: | ---: |",
    ]
    for level in sorted({r["level"] for r in reached}):
        for arm in sorted({r["arm"] for r in reached}):
            cost = {
                axis: [r["sustained"] for r in sorted(reached, key=lambda r: r["seed"])
                       if r["arm"] == arm and r["level"] == level and r["axis"] == axis]
                for axis in ("boxes_obtained", "seconds")
            }  # fmt: skip
            lines.append(
                f"| {level:.0%} | {_header(rows, arm)} | {_cell(cost['boxes_obtained'])} | "
                f"{_cell(cost['seconds'])} |"
            )
    return lines


def rounds_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: each round's mAP@0.5 (% of the reference, mean over seeds) per arm and the control; an
    asterisk marks a round where an arm is not above the control on the same seeds."""
    arms = sorted({r["arm"] for r in rows if r["arm"] not in ("initial", "full")})
    by: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
    for row in rows:
        if row["arm"] in arms and row.get("map50_of_full") is not None:
            by[(row["arm"], row["round"])][row["seed"]] = row["map50_of_full"]
    numbers = sorted({n for _, n in by})
    lines = [
        "| round | " + " | ".join(_header(rows, a) for a in arms) + " |",
        "| ---: | " + " | ".join("---:" for _ in arms) + " |",
    ]
    for n in numbers:
        controls = by.get(("control", n), {})
        cells = []
        for arm in arms:
            if not by.get((arm, n)):
                cells.append("-")
                continue
            mine = by[(arm, n)]
            mean = float(np.mean(list(mine.values())))
            paired = [controls[seed] for seed in mine if seed in controls]
            flag = "*" if arm != "control" and len(paired) == len(mine) and mean <= np.mean(paired) else ""
            cells.append(f"{mean:.1%}{flag}")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


def _of(rows: list[dict[str, Any]]) -> str:
    """What mAP@0.5 percentages are of: the fully supervised reference, or (without one) the best arm."""
    return "full" if any(r["arm"] == "full" for r in rows) else "best"


def lyu_table(rows: list[dict[str, Any]], pool_boxes: int) -> list[str]:
    """Markdown: mAP@0.5 (% of the reference) each arm had after obtaining LYU_SHARE of the pool's boxes."""
    at = LYU_SHARE * pool_boxes
    lines = [f"| arm | % of {_of(rows)} mAP@0.5 | seeds |", "| --- | ---: | --- |"]
    for arm, seeds in sorted(curves(rows, "boxes_obtained").items()):
        values = [value_at(curve, at) for curve in seeds.values()]
        done = [v for v in values if not math.isnan(v)]
        if not done:
            cell = (
                f"- (its runs end below {at:.0f} boxes)"
                if all(c[-1][0] < at for c in seeds.values())
                else "-"
            )
        else:
            spread = f" [{min(done):.0%}-{max(done):.0%}]" if len(done) > 1 else ""
            cell = f"{np.mean(done):.0%}{spread}"
        lines.append(f"| {arm} | {cell} | {len(done)} of {len(values)} |")
    return lines


def finals_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"| arm | seeds | rounds | boxes obtained | queries answered | annotator hours | mAP@0.5 "
        f"| % of {_of(rows)} | mAP |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm in sorted({r["arm"] for r in rows}):
        last = [
            max((r for r in rows if r["arm"] == arm and r["seed"] == s), key=lambda r: r["round"])
            for s in sorted({r["seed"] for r in rows if r["arm"] == arm})
        ]
        of_full = [r["map50_of_full"] for r in last if r.get("map50_of_full") is not None]
        lines.append(
            f"| {arm} | {', '.join(str(r['seed']) for r in last)} | "
            f"{np.mean([r['round'] for r in last]):.0f} | "
            f"{np.mean([r['boxes_obtained'] for r in last]):.0f} | "
            f"{np.mean([r['queries_answered'] for r in last]):.0f} | "
            f"{np.mean([r['seconds'] for r in last]) / 3600:.2f} | "
            f"{np.mean([r['map50'] or 0 for r in last]):.3f} | "
            f"{np.mean(of_full):.1%} | {np.mean([r['map'] or 0 for r in last]):.3f} |"
        )
    return lines


STILL_RISING = "still rising at its last round: not shown to have converged"


def _convergence(rows: list[dict[str, Any]], steps: int | None, tolerance: float | None) -> list[str]:
    """Table rows: per seed, mAP@0.5 round by round, the last round's gain, whether it converged, and the
    wall time (the runner's clock at its last round)."""
    lines = []
    for seed in sorted({r["seed"] for r in rows}):
        own = sorted((r for r in rows if r["seed"] == seed), key=lambda r: r["round"])
        curve = [r["map50"] or 0.0 for r in own]
        gain = curve[-1] - max(curve[:-1]) if len(curve) > 1 else None
        converged = gain is not None and tolerance is not None and gain < tolerance * max(curve[:-1])
        took = own[-1].get("wall_s")
        lines.append(
            f"| {seed} | {len(curve) * steps if steps else '-'} | {', '.join(f'{m:.3f}' for m in curve)} | "
            f"{'-' if gain is None else f'{gain:+.3f}'} | "
            f"{'converged' if converged else STILL_RISING} | "
            f"{'-' if took is None else f'{took / 60:.0f} min'} |"
        )
    return lines


PRESETS_STEPS = "the preset’s"


def initial_section(rows: list[dict[str, Any]], spec: dict[str, Any]) -> list[str]:
    """Markdown: how the initial model every arm adopts was trained (by the reference's rule, where the
    experiment trains it to convergence) and, per seed, its rounds."""
    initial = [r for r in rows if r["arm"] == "initial"]
    most = int(spec.get("initial_rounds") or 1)
    if not initial or most <= 1:
        return []
    steps = {**spec.get("settings", {}), **spec.get("initial_settings", {})}.get("iterations")
    tolerance = spec.get("full_tolerance")
    return [
        "",
        "## The initial model",
        "",
        "Trained on the initial images by the reference's rule: warm-started rounds of "
        f"{steps or PRESETS_STEPS} optimizer steps until a round raised its best mAP@0.5 by less than "
        f"{'a set share' if tolerance is None else f'{tolerance:.0%}'} of it, at most {most} rounds; every "
        "arm adopts its last round's model, so that the arms' curves measure labels, not unfinished "
        "training.",
        "",
        "| seed | steps | mAP@0.5 round by round | last round's gain | stopped | took |",
        "| ---: | ---: | --- | ---: | --- | ---: |",
        *_convergence(initial, steps, tolerance),
    ]


def reference_section(rows: list[dict[str, Any]], spec: dict[str, Any]) -> list[str]:
    """Markdown: the reference's schedule and, per seed, its mAP@0.5 round by round and whether it
    stopped because it had converged or because its rounds ran out."""
    full = [r for r in rows if r["arm"] == "full"]
    if not full:
        return []
    steps = {**spec.get("settings", {}), **spec.get("full_settings", {})}.get("iterations")
    tolerance, most = spec.get("full_tolerance"), spec.get("full_rounds")
    lines = [
        "",
        "## The fully supervised reference",
        "",
        f"The same model on every pool box, warm-started rounds of {steps or 'the preset’s'} optimizer "
        f"steps until a round raised its best mAP@0.5 by less than "
        f"{'a set share' if tolerance is None else f'{tolerance:.0%}'} of it"
        f"{f', at most {most} rounds' if most else ''}; the reference is its last round.",
        "",
        "| seed | steps | mAP@0.5 round by round | last round's gain | stopped | took |",
        "| ---: | ---: | --- | ---: | --- | ---: |",
        *_convergence(full, steps, tolerance),
    ]
    for source in spec.get("reference_from", []):
        lines.append(
            f"\nThe reference of seed{'s' * (len(source['seeds']) > 1)} "
            f"{', '.join(map(str, source['seeds']))} is reused from `{source['run']}` (experiment "
            f"{source['experiment']}, the same data set, model settings and reference schedule): fully "
            "labeled images carry no answers, noisy targets or unknown background, so what changed in "
            "how the arms train does not change it."
        )
    for seed, models in sorted(spec.get("initial_models", {}).items()):
        lines.append(
            f"\nSeed {seed}'s runs trained initial models that differ (mAP@0.5 "
            f"{', '.join(f'{model:.3f}' for model in (m['map50'] for m in models))}): each run's arms start "
            "from their own."
        )
    return lines


def summary(
    rows: list[dict[str, Any]],
    title: str,
    runs: list[dict[str, Any]],
    pool_boxes: int,
    spec: dict[str, Any] | None = None,
    levels: Sequence[float] = LEVELS,
) -> str:
    from oracle.equal_boxes import equal_boxes_section
    from oracle.goal import goal_section

    rows, reference = relative(rows)
    reached = level_rows(rows, levels)
    seeds = sorted({r["seed"] for r in rows})
    has_control = any(r["arm"] == "control" for r in rows)
    lines = [f"# {title}", ""]
    for run in runs:
        if run.get("merges"):
            lines.append(f"- `{run['command']}` (merges the runs above: no training, seconds)")
            continue
        cpu = f"{run['cpu_s'] / 3600:.1f} CPU hours" if run.get("cpu_s") else "CPU time not measured"
        source = run.get("reference_only")
        reused = f"; its fully supervised reference only, reused from {source}" if source else ""
        lines.append(f"- `{run['command']}` ({cpu}; {run.get('machine', 'machine not recorded')}{reused})")
    lines += [
        "",
        f"Seeds {seeds}. mAP@0.5 is shown as a percentage of {reference}. Cells give the cost at which an "
        "arm's curve reaches a level and stays at or above it to the end of the run (linear between "
        "rounds), as the mean over seeds with the range in brackets; '-' where a seed's last round is "
        "below the level. Savings compare, seed by seed, the box arm and the whole-image arm (drawn or "
        "reviewed) that needed the least on that axis, and where image review ran, the review arm and the "
        "arm drawing whole images that needed the least; where the first needed more than twice the "
        "second's cost, the saving is given as that multiple.",
    ]
    if reached:  # a probe of the first model alone has no arm that obtains labels: no level to reach
        lines += ["", "## Both cost axes side by side", "", *both_axes_table(rows, reached)]
        for axis, name in AXES.items():
            lines += ["", f"## On {name}", "", *level_table(rows, reached, axis, "sustained")]
        lines += [
            "",
            "## First touch (the figure earlier reports gave; a curve may fall back below the level later)",
            "",
            f"On {AXES['boxes_obtained']}:",
            "",
            *level_table(rows, reached, "boxes_obtained", "first_touch"),
        ]
    lines += [
        "",
        "## Round by round, against the control (no new labels, the same training)"
        if has_control
        else "## Round by round (this run has no control arm)",
        "",
        f"mAP@0.5 as % of {_of(rows)}, mean over seeds"
        + ("; * marks an arm not above the control at that round " if has_control else " ")
        + (
            "(round 1 is each run's initial model; runs of one seed trained different ones, below)."
            if (spec or {}).get("initial_models")
            else "(round 1 is the initial model every arm shares)."
        ),
        "",
        *rounds_table(rows),
        *(
            [
                "",
                f"## After obtaining {LYU_SHARE:.0%} of the pool's {pool_boxes} boxes (Lyu et al., CVPR "
                "2023: full-supervision quality on VOC with 19%)",
                "",
                *lyu_table(rows, pool_boxes),
            ]
            if reached
            else []
        ),
        *equal_boxes_section(rows),
        "",
        "## Final points (mean over seeds)",
        "",
        *finals_table(rows),
        *auto_section(rows),
        *goal_section(rows),
        *initial_section(rows, spec or {}),
        *reference_section(rows, spec or {}),
        *pilot_section(rows, spec or {}),
    ]
    return "\n".join(lines) + "\n"


TIE = 0.005  # the pilot rule's tie: closer than this in mean mAP@0.5 goes to the cheaper arm


def pilot_choice(
    rows: list[dict[str, Any]], unit: str = "box"
) -> tuple[str | None, list[tuple[str, float, float]]]:
    """The pilots' rule (oracle/presets.py): each arm of ``unit``'s mean mAP@0.5 over its rounds of
    queries (rounds after the first) and its annotator seconds in all, best first; and the chosen arm (a
    tie within TIE goes to the fewer seconds)."""
    scored = []
    for arm in sorted({r["arm"] for r in rows if r.get("unit") == unit}):
        own = [r for r in rows if r["arm"] == arm and r["round"] > 1 and r.get("map50") is not None]
        if own:
            seconds = max(float(r.get("seconds") or 0) for r in own)
            scored.append((arm, sum(float(r["map50"]) for r in own) / len(own), seconds))
    scored.sort(key=lambda s: -s[1])
    if not scored:
        return None, []
    close = [s for s in scored if scored[0][1] - s[1] < TIE]
    return min(close, key=lambda s: s[2])[0], scored


def _served(rows: list[dict[str, Any]], arm: str) -> list[tuple[int, int, str | None]]:
    return sorted((r["seed"], r["round"], r.get("unit_served")) for r in rows if r["arm"] == arm)


def pilot_section(rows: list[dict[str, Any]], spec: dict[str, Any]) -> list[str]:
    """A pilot's rule, as written before it ran, applied to its rows: the box arm, and where auto arms ran,
    auto's quality gate (arms that served the same units round by round ran alike: then the default)."""
    if not spec.get("rule"):
        return []
    chosen, scored = pilot_choice(rows)
    lines = ["", "## The pilot's choice", "", f"The rule, written before it ran: {spec['rule']}.", ""]
    lines += ["| box arm | mean mAP@0.5 over the rounds of queries | annotator seconds |"]
    lines += ["| --- | ---: | ---: |"]
    lines += [f"| {arm} | {mean:.3f} | {seconds:,.0f} |" for arm, mean, seconds in scored]
    lines += ["", f"Chosen: **{chosen}**." if chosen else "No box arm has a round of queries: none chosen."]
    auto, scored_auto = pilot_choice(rows, "auto")
    if scored_auto:
        lines += ["", "| auto arm | mean mAP@0.5 over the rounds of queries | annotator seconds | units |"]
        lines += ["| --- | ---: | ---: | --- |"]
        lines += [
            f"| {arm} | {mean:.3f} | {seconds:,.0f} | "
            f"{', '.join(str(u) for _, n, u in _served(rows, arm) if n > 1)} |"
            for arm, mean, seconds in scored_auto
        ]
        alike = len({tuple(_served(rows, arm)) for arm, _, _ in scored_auto}) == 1
        lines += [
            "",
            "The auto arms served the same units in every round: they ran alike, so auto keeps its "
            "documented default gate."
            if alike
            else f"Chosen for auto: **{auto}**.",
        ]
    return lines


def auto_section(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: each auto arm's unit round by round and the figures it was chosen on."""
    chosen = sorted(
        (r for r in rows if r.get("unit") == "auto" and r.get("unit_served")),
        key=lambda r: (r["arm"], r["seed"], r["round"]),
    )
    if not chosen:
        return []
    lines = ["", "## unit auto, round by round", "", "| arm | seed | round | unit | chosen on |"]
    lines += ["| --- | ---: | ---: | --- | --- |"]
    lines += [
        f"| {r['arm']} | {r['seed']} | {r['round']} | {r['unit_served']} | {r.get('unit_reason') or '-'} |"
        for r in chosen
    ]
    return lines


def write_all(
    rows: list[dict[str, Any]],
    out: Path,
    title: str,
    runs: list[dict[str, Any]],
    pool_boxes: int,
    spec: dict[str, Any] | None = None,
    levels: Sequence[float] = LEVELS,
) -> None:
    from oracle.classes import write_classes
    from oracle.plots import plot

    with_reference, _ = relative(rows)
    with (out / "rounds.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ROUND_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(with_reference)
    with (out / "levels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=["axis", "level", "arm", "seed", "sustained", "first_touch"]
        )
        writer.writeheader()
        writer.writerows(level_rows(with_reference, levels))
    plot(with_reference, out, title, curves)
    write_classes(rows, out, title)
    (out / "summary.md").write_text(summary(rows, title, runs, pool_boxes, spec or {}, levels))
