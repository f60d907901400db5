"""`boxal simulate --preset smoke` end to end: an embedded server and worker, the oracle over HTTP.
Asserts the outputs and the curves' shape, not particular mAP values."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_smoke_preset_writes_every_output_with_well_formed_curves(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    done = subprocess.run(
        # --set: a setting over the preset's, for every arm and the reference
        [
            *(sys.executable, "-m", "app.cli", "simulate", "--preset", "smoke", "--out", str(out)),
            *("--set", "lambda_d=0.25"),
            *("--initial-images", "5"),  # the preset's 4 unless asked
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for name in (
        "rounds.jsonl",
        "rounds.csv",
        "summary.md",
        "experiment.json",
        "map50_vs_boxes_obtained.png",
        "map50_vs_queries_answered.png",
        "map50_vs_seconds.png",
        "map50_vs_round.png",
        "levels.csv",
        "classes.csv",  # per-class AP and box counts of every round
        "ap50_per_class.png",
    ):
        assert (out / name).stat().st_size > 0, name
    rows = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    with (out / "rounds.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(rows)
    assert {r["arm"] for r in rows} == {"initial", "box/random", "image/random", "control", "full"}
    for arm in ("box/random", "image/random"):
        curve = sorted((r for r in rows if r["arm"] == arm), key=lambda r: r["round"])
        assert [r["round"] for r in curve] == [1, 2, 3]  # the initial model's round, then two AL rounds
        for key in ("boxes_obtained", "queries_answered", "seconds"):
            values = [r[key] for r in curve]
            assert values == sorted(values), (arm, key, values)  # label counts never go down
        assert [r["queries_answered"] for r in curve] == ([0, 8, 16] if arm == "box/random" else [0, 2, 4])
        assert all(0 <= r["map50"] <= 1 and 0 <= r["map"] <= r["map50"] for r in curve)
    initial = next(r for r in rows if r["arm"] == "initial")
    first = [r for r in rows if r["round"] == 1 and r["arm"] != "full"]  # the reference has every box
    assert all(r["boxes_obtained"] == initial["boxes_obtained"] for r in first)
    image = [r for r in rows if r["arm"] == "image/random"]
    assert max(r["boxes_obtained"] for r in image) > initial["boxes_obtained"]  # image queries obtain boxes
    # the control trains as the arms do, without new labels; the reference, on its own schedule, stops
    # after a round that gains too little or at its last (2 rounds)
    assert [r["round"] for r in rows if r["arm"] == "control"] == [1, 2, 3]
    assert [r["round"] for r in rows if r["arm"] == "full"] == [1, 2]
    control = [r for r in rows if r["arm"] == "control"]
    assert all(r["boxes_obtained"] == initial["boxes_obtained"] for r in control)  # it gets no labels
    summary = (out / "summary.md").read_text()
    assert "the fully supervised model's mAP@0.5" in summary
    assert "## The fully supervised reference" in summary
    assert "| level | box/random | image/random | best box vs best image: saving per seed |" in summary
    spec = json.loads((out / "experiment.json").read_text())
    assert spec["runs"][0]["cpu_s"] > 0 and spec["environment"]["packages"]["torch"]
    assert spec["settings"]["lambda_d"] == 0.25 and "--set lambda_d=0.25" in spec["runs"][0]["command"]
    assert spec["initial_images"] == 5 and "--initial-images 5" in spec["runs"][0]["command"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "min_size"], "--set 'min_size': expected KEY=VALUE"),
        (["--set", "=3"], "expected KEY=VALUE"),
        (["--set", "min_sise=512"], "the server refused the experiment's settings"),
        (["--set", "min_size=big"], "the server refused the experiment's settings"),
        (["--initial-images", "0"], "Invalid value for '--initial-images'"),
        (["--initial-images", "24"], "24 initial images leave none of the pool's 24"),
    ],
)
def test_bad_input_is_refused_before_any_training(tmp_path: Path, args: list[str], message: str) -> None:
    out = tmp_path / "smoke"
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "simulate", "--preset", "smoke", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert message in done.stderr, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    rounds = out / "rounds.jsonl"
    assert not rounds.exists() or rounds.read_text() == ""  # nothing trained, no round recorded
