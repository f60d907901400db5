"""`boxal report`: runs of one experiment made separately (seeds or arms run apart, on other machines or at
other times) merged into one report, and a fully supervised reference reused from another experiment's run.

A reference depends only on the data set, the model's settings and its own schedule: fully labeled images
carry no answers, no noisy targets and no unknown background, so an experiment whose arms changed (a new box
loop, a fix to how answers train) may take the reference an earlier experiment trained, where those
settings agree (``REFERENCE_KEYS``). The merged experiment.json names where it came from and the summary
says so.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from oracle.report import LEVELS, check_levels, write_all

# what the fully supervised reference's rows depend on; a reused one must agree on each
REFERENCE_KEYS = (
    "dataset", "pool_images", "pool_boxes", "test_images", "settings", "full_settings", "full_rounds",
    "full_tolerance",
)  # fmt: skip


# project settings that change nothing on a fully labeled pool: what a query asks and how partly labeled
# images train (the reference has none), and "loop", which only gives defaults to those
QUERY_ONLY = {
    "loop", "unit", "strategy", "reduction", "pool_policy", "query_min_score", "noisy_targets",
    "pseudo_label_score", "unknown_background", "refresh_confidence", "complete_share", "auto_min_recall",
    "auto_window", "auto_min_images", "annotator_costs", "review_min_score", "fallback",
}  # fmt: skip


def _for_reference(key: str, spec: dict[str, Any]) -> Any:
    value = spec.get(key)
    if key == "settings" and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in QUERY_ONLY}
    return value


def _ran(spec: dict[str, Any]) -> list[str]:
    """The arms a run recorded (runs made before arms could be chosen ran them all)."""
    if "ran" in spec:
        return list(spec["ran"])
    arms = [a.get("label") or f"{a['unit']}/{a['strategy']}" for a in spec["arms"]]
    return (
        ["initial", *arms]
        + ["control"] * bool(spec.get("control"))
        + ["full"] * bool(spec.get("full_supervision"))
    )


def _read(run: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    log = run / "rounds.jsonl"
    if not log.is_file():
        raise ValueError(f"{run} holds no rounds.jsonl: not an experiment directory")
    spec = json.loads((run / "experiment.json").read_text())
    return spec, [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _reused(
    references: Sequence[Path], settings: dict[str, Any], seeds: set[int], has_full: set[int]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``full`` rows of other experiments' runs for ``seeds``, the runs that made them (marked as
    reused) and where each came from; refused where a setting the reference depends on differs, where a
    merged run has its own reference for that seed, or where two references give one seed."""
    rows: list[dict[str, Any]] = []
    made: list[dict[str, Any]] = []
    sources: list[dict[str, Any]] = []
    taken: dict[int, Path] = {}
    for run in references:
        spec, log = _read(run)
        changed = [k for k in REFERENCE_KEYS if _for_reference(k, spec) != _for_reference(k, settings)]
        if changed:
            raise ValueError(
                f"{run}'s reference cannot stand for {settings['name']}'s: {', '.join(changed)} differ"
            )
        full = [r for r in log if r["arm"] == "full" and r["seed"] in seeds]
        given = sorted({r["seed"] for r in full})
        if not given:
            raise ValueError(f"{run} holds no fully supervised reference for seeds {sorted(seeds)}")
        for seed in given:
            if seed in has_full:
                raise ValueError(f"seed {seed}'s reference is both in the runs merged and in {run}")
            if seed in taken:
                raise ValueError(f"seed {seed}'s reference is in both {taken[seed]} and {run}")
            taken[seed] = run
        rows += [{**r, "experiment": settings["name"], "reused_from": str(run)} for r in full]
        made += [{**m, "reference_only": str(run)} for m in spec.get("runs", [{"command": str(run)}])]
        sources.append({"run": str(run), "experiment": spec["name"], "seeds": given})
    return rows, made, sources


def merge_runs(
    runs: list[Path],
    out: Path,
    command: str,
    levels: Sequence[float] = LEVELS,
    references: Sequence[Path] = (),
) -> list[dict[str, Any]]:
    """Merge the rounds of runs of one experiment made separately into one report under ``out``:
    rounds.jsonl, CSVs, plots and a summary whose spread covers every seed. Runs must share the
    experiment's settings and may not repeat an arm of a seed; each run of a seed trains its own initial
    model, and the first run's initial point is kept (where another run's differs, experiment.json's
    ``initial_models`` says so: that run's arms start from their own, which their round 1 records).
    ``references``: runs of another experiment whose fully supervised reference stands for seeds the
    merged runs have none of (the module says when). ``levels`` are the shares of the reference
    tabulated."""
    levels = check_levels(levels)
    settings: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = []
    made: list[dict[str, Any]] = []
    seen: dict[tuple[int, str], Path] = {}
    initial: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        spec, log = _read(run)
        seeds = spec.pop("seeds")
        made += spec.pop("runs", [{"command": str(run)}])
        spec.pop("environment", None)
        ran = _ran(spec)
        spec.pop("ran", None)
        if settings is None:
            settings = spec
        elif spec != settings:
            changed = sorted(k for k in spec.keys() | settings.keys() if spec.get(k) != settings.get(k))
            raise ValueError(f"{run} is a different experiment from {runs[0]}: {', '.join(changed)} differ")
        for seed in seeds:
            for arm in ran:
                if arm == "initial":
                    continue
                if (seed, arm) in seen:
                    raise ValueError(f"seed {seed}'s {arm} is in both {seen[seed, arm]} and {run}")
                seen[seed, arm] = run
        last_initial: dict[int, dict[str, Any]] = {}  # the model this run's arms adopted, per seed
        for row in log:
            if row["arm"] == "initial" and (
                row["seed"] not in last_initial or row["round"] > last_initial[row["seed"]]["round"]
            ):
                last_initial[row["seed"]] = row
        for seed, row in last_initial.items():
            initial[seed].append({"run": str(run), "map50": row["map50"]})
        for row in log:
            if row["arm"] == "initial" and initial[row["seed"]][0]["run"] != str(run):
                continue  # each seed's initial model once: the first run's (all its rounds)
            rows.append(row)
    assert settings is not None
    seeds = sorted({seed for seed, _ in seen})
    has_full = {seed for seed, arm in seen if arm == "full"}
    reused, reference_runs, sources = _reused(references, settings, set(seeds), has_full)
    out.mkdir(parents=True, exist_ok=True)
    made += reference_runs
    made.append({"command": command, "merges": True})
    differ = {
        str(seed): models
        for seed, models in initial.items()
        if len({round(m["map50"], 9) for m in models}) > 1
    }
    merged = {
        **settings,
        "seeds": seeds,
        "runs": made,
        **({"initial_models": differ} if differ else {}),
        **({"reference_from": sources} if sources else {}),
    }
    rows += reused
    (out / "experiment.json").write_text(json.dumps(merged, indent=2) + "\n")
    (out / "rounds.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    title = f"{settings['name']}: box vs image queries ({settings['dataset']}), seeds {seeds}"
    write_all(rows, out, title, made, int(settings.get("pool_boxes") or 0), merged, levels)
    return rows
