"""`boxal report`: runs of one experiment made apart (one seed each) merge into one report with spread."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli

SPEC = {"name": "toy", "dataset": "toy", "initial_images": 2, "rounds": 2, "settings": {"t_d": 0.3}}


def _run(folder: Path, seed: int, gain: float, spec: dict | None = None) -> Path:
    """A finished run: the initial model, then two rounds of a box and an image arm."""
    rows = [{"arm": "initial", "unit": "-", "strategy": "-", "round": 1, "boxes_obtained": 100, "map50": 0.2}]
    for arm, per_round in (("box/random", 20), ("image/random", 40)):
        rows += [
            {"arm": arm, "unit": arm.split("/")[0], "strategy": "random", "round": r + 1,
             "boxes_obtained": 100 + r * per_round, "map50": 0.2 + r * gain}
            for r in range(3)
        ]  # fmt: skip
    rows = [
        {**row, "experiment": "toy", "dataset": "toy", "seed": seed, "queries_answered": 0, "seconds": 0.0,
         "map": row["map50"] / 2, "model_version": "v", "wall_s": 1.0}
        for row in rows
    ]  # fmt: skip
    folder.mkdir(parents=True)
    (folder / "experiment.json").write_text(json.dumps({**(spec or SPEC), "seeds": [seed]}))
    (folder / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.md").write_text(f"# toy\n\nCommand: `boxal simulate --seed {seed}`\n")
    return folder


def test_runs_of_other_seeds_merge_into_one_report_with_their_spread(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "s0", 0, 0.1), _run(tmp_path / "s1", 1, 0.2)
    out = tmp_path / "merged"
    done = CliRunner().invoke(cli, ["report", str(a), str(b), "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "experiment.json").read_text())["seeds"] == [0, 1]
    assert len((out / "rounds.jsonl").read_text().splitlines()) == 14
    assert (out / "rounds.csv").is_file() and (out / "map50_vs_boxes_obtained.png").is_file()
    summary = (out / "summary.md").read_text()
    assert "`boxal simulate --seed 0`; `boxal simulate --seed 1`; `boxal report" in summary
    # best final mAP@0.5 is the mean over seeds of the box arm: (0.4 + 0.6) / 2; 50% of it is 0.25:
    # seed 0 crosses it at 110 boxes, seed 1 at 105 (box); 120 and 110 (image)
    assert "| 50% | 0.250 | 108 [105-110] | 115 [110-120] | 7% |" in summary


def test_runs_of_different_experiments_or_the_same_seed_are_refused(tmp_path: Path) -> None:
    a = _run(tmp_path / "s0", 0, 0.1)
    other = _run(tmp_path / "other", 1, 0.1, {**SPEC, "settings": {"t_d": 0.05}})
    again = _run(tmp_path / "again", 0, 0.2)
    for run, message in ((other, "settings differ"), (again, "seed 0 is in both")):
        out = tmp_path / f"merged-{run.name}"
        done = CliRunner().invoke(cli, ["report", str(a), str(run), "--out", str(out)])
        assert done.exit_code == 2 and message in done.output
        assert not out.exists()
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "not an experiment directory" in missing.output
