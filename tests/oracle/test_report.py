"""Reports on a hand-made experiment whose answers are known: levels as % of the fully supervised reference,
sustained crossings, paired savings, the control round by round, Lyu et al.'s 20% point; and runs of other
seeds merged with `boxal report`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from app.cli import cli
from oracle.report import summary, write_all

ARMS = [
    {"unit": "box", "strategy": "s", "label": "box/a"},
    {"unit": "box", "strategy": "s", "label": "box/b"},
    {"unit": "image", "strategy": "s", "label": "image/x"},
]
SPEC = {
    "name": "toy", "dataset": "toy", "initial_images": 2, "rounds": 2, "pool_boxes": 1000, "arms": ARMS,
    "control": True, "full_supervision": True, "settings": {"iterations": 10},
    "full_settings": {"iterations": 50}, "full_rounds": 4, "full_tolerance": 0.02,
}  # fmt: skip
FULL = {0: 0.8, 1: 0.5}  # each seed's fully supervised mAP@0.5


def _rows(seed: int) -> list[dict]:
    """Curves as fractions of the seed's reference: box/a reaches 90% at 200 boxes, image/x at 400."""
    ref = FULL[seed]
    curves = {
        ("initial", "-"): [(100, 0.5)],
        ("box/a", "box"): [(100, 0.5), (200, 0.9), (300, 1.0)],
        ("box/b", "box"): [(100, 0.5), (200, 0.8), (300, 0.95)],
        ("image/x", "image"): [(100, 0.5), (250, 0.7), (400, 0.9)],
        ("control", "-"): [(100, 0.5), (100, 0.55), (100, 0.6)],
        ("full", "-"): [(1000, 0.9), (1000, 1.0)],
    }
    return [
        {"experiment": "toy", "dataset": "toy", "arm": arm, "unit": unit, "strategy": "s", "seed": seed,
         "round": r + 1, "boxes_obtained": x, "queries_answered": 2 * x, "seconds": 3.0 * x,
         "map50": share * ref, "map": share * ref / 2, "model_version": "v", "wall_s": 1.0}
        for (arm, unit), points in curves.items()
        for r, (x, share) in enumerate(points)
    ]  # fmt: skip


def test_levels_are_shares_of_full_supervision_reached_for_good_with_paired_savings() -> None:
    rows = _rows(0) + _rows(1)
    runs = [{"command": "boxal simulate --preset toy", "cpu_s": 7200, "machine": "2 CPUs"}]
    text = summary(rows, "toy", runs, pool_boxes=1000)
    assert "`boxal simulate --preset toy` (2.0 CPU hours; 2 CPUs)" in text
    assert "the fully supervised model's mAP@0.5" in text
    # on boxes: 90% of full at 200 boxes (box/a), 400 (image/x): 50% fewer in both seeds
    assert (
        "| 90% | 200 [200-200] | 267 [267-267] | 400 [400-400] | box/a vs image/x: 50% [50% to 50%] |" in text
    )
    # seconds are 3x boxes; queries 2x
    assert "| 90% | 600 [600-600] |" in text and "| 90% | 400 [400-400] |" in text
    # both axes side by side, arm by arm
    assert "| 90% | box/a | 200 [200-200] | 600 [600-600] |" in text
    assert "| 90% | image/x | 400 [400-400] | 1200 [1200-1200] |" in text
    # round by round against the control: box/a 90% at round 2, the control 55%
    assert "| 2 | 90.0% | 80.0% | 55.0% | 70.0% |" in text
    # Lyu et al.: 20% of the pool's 1000 boxes = 200: box/a is at 90% of full there
    assert "| box/a | 90% [90%-90%] | 2 of 2 |" in text


def test_image_review_is_compared_with_drawing_whole_images_and_both_with_box_queries() -> None:
    rows = []
    for seed in (0, 1):
        rows += _rows(seed)
        image = [r for r in _rows(seed) if r["arm"] == "image/x"]
        # review reaches 90% at 300 boxes (900 s) where drawing needs 400 (1,200 s): 25% fewer seconds
        for row, share in zip(image, (0.5, 0.7, 0.9), strict=True):
            boxes = {1: 100, 2: 200, 3: 300}[row["round"]]
            rows.append(
                {**row, "arm": "review/r", "unit": "review", "boxes_obtained": boxes,
                 "seconds": 3.0 * boxes, "map50": share * FULL[seed]}
            )  # fmt: skip
    text = summary(rows, "toy", [], pool_boxes=1000)
    seconds = text.split("## On estimated annotator seconds")[1].split("##")[0]
    assert (
        "| best box vs best image: saving per seed | review vs best drawn image: saving per seed |" in seconds
    )
    line = next(row for row in seconds.splitlines() if row.startswith("| 90% |"))
    # box/a holds 90% at 600 s against review's 900 s: the best whole-image arm is now the review
    assert line.endswith("| box/a vs review/r: 33% [33% to 33%] | review/r vs image/x: 25% [25% to 25%] |")
    plain = summary(_rows(0) + _rows(1), "toy", [], pool_boxes=1000)
    assert "review vs best drawn image" not in plain  # no review arm, no column


def test_a_run_without_a_control_says_so_and_marks_no_arm_against_one() -> None:
    rows = [r for r in _rows(0) if r["arm"] not in ("control", "full")]
    text = summary(rows, "toy", [{"command": "boxal simulate --preset toy --arm box/a"}], pool_boxes=1000)
    assert "## Round by round (this run has no control arm)" in text
    assert "against the control" not in text and "* marks" not in text
    assert "*" not in text.split("## Round by round")[1].split("## After")[0]


def test_a_curve_that_touches_a_level_and_falls_back_is_not_counted_as_reaching_it() -> None:
    rows = _rows(0)
    for row in rows:
        if row["arm"] == "box/b" and row["round"] == 2:
            row["map50"] = 0.91 * FULL[0]  # reaches 90% at round 2
        if row["arm"] == "box/b" and row["round"] == 3:
            row["map50"] = 0.85 * FULL[0]  # falls back below 90% at the end
    text = summary(rows, "toy", [{"command": "c"}], pool_boxes=1000)
    sustained = next(line for line in text.splitlines() if line.startswith("| 90% | 200 | "))
    assert sustained.split(" | ")[2] == "-"  # box/b: never for good
    first = text.split("## First touch")[1]
    assert "| 90% | 200 | 198 |" in first  # but it touched it at 198 boxes


def _run(
    folder: Path, seed: int, spec: dict | None = None, ran: list[str] | None = None, initial: float = 0.5
) -> Path:
    """A run's folder; ``ran`` names the arms it ran (default: every arm, as runs before arms could be
    chosen recorded nothing); ``initial`` is its initial model's share of the reference."""
    folder.mkdir(parents=True)
    runs = [{"command": f"boxal simulate --seed {seed}", "cpu_s": 3600.0, "machine": "2 CPUs"}]
    made = {**(spec or SPEC), "seeds": [seed], "runs": runs, **({"ran": ran} if ran else {})}
    (folder / "experiment.json").write_text(json.dumps(made))
    rows = [r for r in _rows(seed) if ran is None or r["arm"] in ran]
    for row in rows:
        if row["arm"] == "initial":
            row["map50"] = initial * FULL[seed]
    (folder / "rounds.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_arms_of_a_seed_run_apart_merge_and_a_repeated_arm_is_refused(tmp_path: Path) -> None:
    boxes = _run(tmp_path / "boxes", 0, ran=["initial", "box/a", "box/b"])
    rest = _run(tmp_path / "rest", 0, ran=["initial", "image/x", "control", "full"], initial=0.52)
    out = tmp_path / "merged"
    done = CliRunner().invoke(cli, ["report", str(boxes), str(rest), "--out", str(out)])
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert sorted({r["arm"] for r in rows}) == ["box/a", "box/b", "control", "full", "image/x", "initial"]
    assert [r["map50"] for r in rows if r["arm"] == "initial"] == [0.5 * FULL[0]]  # the first run's, once
    merged = json.loads((out / "experiment.json").read_text())
    assert merged["seeds"] == [0] and "ran" not in merged
    assert [m["map50"] for m in merged["initial_models"]["0"]] == [0.4, 0.52 * FULL[0]]
    summary = (out / "summary.md").read_text()
    assert "Seed 0's runs trained initial models that differ (mAP@0.5 0.400, 0.416)" in summary
    assert "every arm shares" not in summary and "round 1 is each run's initial model" in summary
    again = _run(tmp_path / "again", 0, ran=["initial", "image/x"])
    done = CliRunner().invoke(
        cli, ["report", str(boxes), str(rest), str(again), "--out", str(tmp_path / "m")]
    )
    assert done.exit_code == 2 and "seed 0's image/x is in both" in done.output


def test_a_reference_from_another_experiment_stands_in_only_where_its_settings_agree(tmp_path: Path) -> None:
    arms = ["initial", "box/a", "box/b", "image/x", "control"]
    new = [_run(tmp_path / f"new{seed}", seed, ran=arms) for seed in (0, 1)]
    old_spec = {**SPEC, "name": "toy-v1", "arms": ARMS[:1], "rounds": 5}  # other arms, other rounds
    old = [_run(tmp_path / f"old{seed}", seed, old_spec) for seed in (0, 1)]
    out = tmp_path / "merged"
    argv = ["report", *map(str, new), "--out", str(out), *(f"--reference={r}" for r in old)]
    done = CliRunner().invoke(cli, argv)
    assert done.exit_code == 0, done.output
    rows = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    full = [r for r in rows if r["arm"] == "full"]
    assert len(full) == 4 and {r["reused_from"] for r in full} == {str(o) for o in old}
    assert [r for r in rows if r["arm"] == "box/a"] and not [r for r in rows if r["seed"] == 2]
    merged = json.loads((out / "experiment.json").read_text())
    assert merged["name"] == "toy" and merged["reference_from"] == [
        {"run": str(old[0]), "experiment": "toy-v1", "seeds": [0]},
        {"run": str(old[1]), "experiment": "toy-v1", "seeds": [1]},
    ]
    summary = (out / "summary.md").read_text()
    assert f"The reference of seed 0 is reused from `{old[0]}` (experiment toy-v1" in summary
    assert f"its fully supervised reference only, reused from {old[1]}" in summary
    # levels are shares of the reused reference: box/a holds 90% from 200 boxes in both seeds
    assert "| 90% | 200 [200-200] |" in summary
    refused = {
        "full_rounds differ": [f"--reference={_run(tmp_path / 'longer', 0, {**old_spec, 'full_rounds': 9})}"],
        "seed 0's reference is in both": [f"--reference={old[0]}", f"--reference={old[0]}"],
        "holds no fully supervised reference for seeds": [
            f"--reference={_run(tmp_path / 'none', 0, old_spec, ran=['initial', 'box/a'])}"
        ],
    }
    for message, references in refused.items():
        done = CliRunner().invoke(cli, ["report", *map(str, new), "--out", str(tmp_path / "m"), *references])
        assert done.exit_code == 2 and message in done.output, done.output
        assert not (tmp_path / "m").exists()
    own = _run(tmp_path / "own", 0, ran=["initial", "full"])
    done = CliRunner().invoke(cli, ["report", str(new[0]), str(own), "--out", str(tmp_path / "m"), argv[-2]])
    assert done.exit_code == 2 and "seed 0's reference is both in the runs merged and in" in done.output


def test_the_reference_section_says_whether_the_reference_converged() -> None:
    rows = _rows(0) + _rows(1)
    last = next(r for r in rows if r["arm"] == "full" and r["seed"] == 1 and r["round"] == 2)
    rows.append({**last, "round": 3, "map50": 1.01 * FULL[1]})  # seed 1 gains 0.005 in a third round
    text = summary(rows, "toy", [], pool_boxes=1000, spec=SPEC)
    section = text.split("## The fully supervised reference")[1]
    assert "rounds of 50 optimizer steps until a round raised its best mAP@0.5 by less than 2% of" in section
    assert (
        "| 0 | 100 | 0.720, 0.800 | +0.080 | still rising at its last round: not shown to have converged |"
        in section
    )
    assert "| 1 | 150 | 0.450, 0.500, 0.505 | +0.005 | converged |" in section


def test_runs_of_other_seeds_merge_into_one_report_the_csvs_reproduce(tmp_path: Path) -> None:
    a, b = _run(tmp_path / "s0", 0), _run(tmp_path / "s1", 1)
    out = tmp_path / "merged"
    done = CliRunner().invoke(cli, ["report", str(a), str(b), "--out", str(out)])
    assert done.exit_code == 0, done.output
    merged = json.loads((out / "experiment.json").read_text())
    assert merged["seeds"] == [0, 1] and [r["command"] for r in merged["runs"]][:2] == [
        "boxal simulate --seed 0",
        "boxal simulate --seed 1",
    ]
    for name in ("rounds.csv", "levels.csv", *(f"map50_vs_{a}.png" for a in ("boxes_obtained", "round"))):
        assert (out / name).is_file(), name
    levels = list(csv.DictReader((out / "levels.csv").open()))
    wanted = [
        float(r["sustained"])
        for r in levels
        if r["axis"] == "boxes_obtained" and r["arm"] == "box/a" and float(r["level"]) == 0.9
    ]
    assert wanted == [200.0, 200.0]  # the summary's 200 [200-200], from the CSV
    shares = {
        (r["arm"], r["seed"], r["round"]): r["map50_of_full"]
        for r in csv.DictReader((out / "rounds.csv").open())
    }
    assert float(shares[("box/a", "1", "2")]) == 0.9
    summary_text = (out / "summary.md").read_text()
    assert (
        "`boxal simulate --seed 1` (1.0 CPU hours; 2 CPUs)" in summary_text and "boxal report" in summary_text
    )


def test_runs_of_different_experiments_or_the_same_seed_are_refused(tmp_path: Path) -> None:
    a = _run(tmp_path / "s0", 0)
    other = _run(tmp_path / "other", 1, {**SPEC, "rounds": 3})
    again = _run(tmp_path / "again", 0)
    for run, message in ((other, "rounds differ"), (again, "seed 0's box/a is in both")):
        out = tmp_path / f"merged-{run.name}"
        done = CliRunner().invoke(cli, ["report", str(a), str(run), "--out", str(out)])
        assert done.exit_code == 2 and message in done.output
        assert not out.exists()
    missing = CliRunner().invoke(cli, ["report", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "not an experiment directory" in missing.output


def test_a_level_the_image_arm_holds_from_the_start_is_no_fraction_of_zero() -> None:
    """Round 1 costs no queries; an image arm that never falls below 90% reached that level at zero cost,
    and a box arm that dips below it first has no saving to state as a fraction (was ZeroDivisionError)."""
    rows = []
    for arm, unit, shares in (
        ("box/a", "box", [0.95, 0.85, 0.97]),
        ("image/x", "image", [0.95, 0.96, 0.97]),
        ("full", "-", [1.0, 1.0, 1.0]),
    ):
        for r, share in enumerate(shares):
            rows.append(
                {"experiment": "toy", "dataset": "toy", "arm": arm, "unit": unit, "strategy": "s", "seed": 0,
                 "round": r + 1, "boxes_obtained": 100 + 100 * r, "queries_answered": 50 * r,
                 "seconds": 60.0 * r, "map50": 0.8 * share, "map": 0.4 * share, "model_version": "v",
                 "wall_s": 1.0}
            )  # fmt: skip
    text = summary(rows, "toy", [], pool_boxes=1000)
    assert "box/a vs image/x: - (the image arm reached it at no cost)" in text


def test_per_class_results_go_to_classes_csv_and_a_plot(tmp_path: Path) -> None:
    rows = _rows(0)
    for row in rows:
        row["per_class"] = [
            {"class": "rare", "ap": 0.1, "ap50": 0.2 * row["round"], "labeled": row["round"], "noisy": 3,
             "queued": 50, "test_boxes": 4},
            {"class": "common", "ap": 0.5, "ap50": 0.9, "labeled": 10 * row["round"], "noisy": 0,
             "queued": 500, "test_boxes": 80},
        ]  # fmt: skip
    write_all(rows, tmp_path, "toy", [], 1000, SPEC)
    table = list(csv.DictReader((tmp_path / "classes.csv").open()))
    assert len(table) == 2 * len(rows)
    rare = [r for r in table if r["arm"] == "box/a" and r["class"] == "rare"]
    assert [(r["round"], r["boxes_obtained"], r["ap50"], r["labeled"]) for r in rare] == [
        ("1", "100", "0.2", "1"),
        ("2", "200", "0.4", "2"),
        ("3", "300", "0.6000000000000001", "3"),
    ]
    assert (tmp_path / "ap50_per_class.png").stat().st_size > 0


def test_runs_merged_part_way_compare_only_arms_run_on_every_seed() -> None:
    """Seed 1 ran an image arm that seed 0 did not yet (was a ValueError from pairing seeds with zip): the
    saving pairs box/a with image/x, the arms both seeds have, and the newer arm is reported alone."""
    rows = _rows(0) + _rows(1)
    extra = [dict(r, arm="image/y") for r in _rows(1) if r["arm"] == "image/x"]
    for row in extra:
        row["boxes_obtained"] = row["boxes_obtained"] // 2  # cheaper: it would be "best" if it counted
    for row in rows:
        if row["arm"] == "control" and row["seed"] == 0 and row["round"] == 2:
            row["map50"] = 0.9 * FULL[0]  # seed 0's control is strong; image/y never ran on seed 0
    text = summary(rows + extra, "toy", [], pool_boxes=1000)
    assert (
        "| 90% | 200 [200-200] | 267 [267-267] | 400 [400-400] | 200 | box/a vs image/x: 50% [50% to 50%] |"
        in text
    )
    assert "| level | box/a | box/b | image/x | image/y (seed 1 only) |" in text
    # round 2: image/y (70%) is above seed 1's control (55%), not the mean over both seeds' (72.5%)
    assert "| 2 | 90.0% | 80.0% | 72.5% | 70.0%* | 70.0% |" in text
    assert "| image/y | 1 | 3 | 200 |" in text


def test_a_box_arm_costing_more_than_twice_the_image_arm_is_stated_as_a_multiple() -> None:
    """A saving of -300% says less than "4.0x the image arm's cost"; savings above -100% stay percentages."""
    rows = []
    for arm, unit, points in (
        ("box/a", "box", [(100, 0.5), (300, 0.8), (400, 0.9)]),
        ("image/x", "image", [(100, 0.9), (150, 0.9), (200, 0.95)]),
        ("full", "-", [(1000, 1.0)]),
    ):
        for r, (boxes, share) in enumerate(points):
            rows.append(
                {"experiment": "toy", "dataset": "toy", "arm": arm, "unit": unit, "strategy": "s", "seed": 0,
                 "round": r + 1, "boxes_obtained": boxes, "queries_answered": 2 * boxes,
                 "seconds": 3.0 * boxes, "map50": 0.8 * share, "map": 0.4 * share, "model_version": "v",
                 "wall_s": 1.0}
            )  # fmt: skip
    text = summary(rows, "toy", [], pool_boxes=1000)
    assert "| 90% | 400 | 100 | box/a vs image/x: 4.0x the image arm's cost |" in text
    assert "| 80% | 300 | 100 | box/a vs image/x: 3.0x the image arm's cost |" in text  # not -200%


def test_a_report_tabulates_the_levels_it_is_asked_for_and_refuses_one_that_is_no_share(
    tmp_path: Path,
) -> None:
    """Where no arm comes near 80% of the reference, lower levels are where arms still compare."""
    a, b = _run(tmp_path / "s0", 0), _run(tmp_path / "s1", 1)
    out = tmp_path / "merged"
    done = CliRunner().invoke(
        cli,
        ["report", str(a), str(b), "--out", str(out), "--level", "0.9", "--level", "0.6", "--level", "0.95"],
    )
    assert done.exit_code == 0, done.output
    levels = list(csv.DictReader((out / "levels.csv").open()))
    assert sorted({float(r["level"]) for r in levels}) == [0.6, 0.9, 0.95]
    text = (out / "summary.md").read_text()
    # 60% of full: box/a at 125 boxes (100 + 0.1/0.4 of 100), image/x at 175 (100 + 0.1/0.2 of 150)
    assert (
        "| 60% | 125 [125-125] | 133 [133-133] | 175 [175-175] | box/a vs image/x: 29% [29% to 29%] |" in text
    )
    assert "| 80% |" not in text
    # 95%: the box arms hold it, the image arm (90% at its end) does not: no saving, and the table says why
    assert "| 95% | 250 [250-250] | 300 [300-300] | - | - (no image arm holds it in every seed) |" in text
    assert "--level=0.9 --level=0.6 --level=0.95` (merges the runs above: no training, seconds)" in text
    for bad in ("0", "-0.5", "3"):
        wrong = tmp_path / f"wrong{bad}"
        done = CliRunner().invoke(cli, ["report", str(a), "--out", str(wrong), "--level", bad])
        assert done.exit_code == 2 and "is not a share of the reference in (0, 2]" in done.output
        assert not wrong.exists()


def test_box_arms_meet_the_best_image_arm_at_equal_boxes_read_off_its_curve() -> None:
    rows = _rows(0) + _rows(1)
    # a second image arm, better early and worse late: image/y at (100, 0.5), (200, 0.7), (300, 0.75)
    y_points = [(100, 0.5), (200, 0.7), (300, 0.75)]
    for seed in (0, 1):
        image_x = [r for r in _rows(seed) if r["arm"] == "image/x"]
        rows += [
            {**row, "arm": "image/y", "boxes_obtained": x, "map50": share * FULL[seed]}
            for row, (x, share) in zip(image_x, y_points, strict=True)
        ]
    # box/b runs past both image arms' boxes in seed 1 only: that round is not compared
    rows = [
        {**r, "boxes_obtained": 450} if (r["arm"], r["seed"], r["round"]) == ("box/b", 1, 3) else r
        for r in rows
    ]
    text = summary(rows, "toy", [], pool_boxes=1000)
    section = text.split("## At equal boxes obtained")[1].split("## Final")[0]
    # at 200 boxes image/x reads 0.5 + 0.2 * 100/150 = 63.3% and image/y 70%: image/y is the best there
    assert "| box/a | 2 | 200 | 90.0% | image/y: 70.0% | +20.0 [+20.0 to +20.0] |" in section
    # at 300 boxes image/x reads 76.7% and image/y 75%
    assert "| box/a | 3 | 300 | 100.0% | image/x: 76.7% | +23.3 [+23.3 to +23.3] |" in section
    assert "| box/b | 3 | 375 | - | - | - (no image arm's runs cover these boxes on every seed) |" in section
    assert "- box/a: above the best image arm in 2 of its 2 rounds of queries." in section
    assert "- box/b: above the best image arm in 1 of its 2 rounds of queries (1 not compared" in section
    # a box arm below the image arm: the gap is negative, paired seed by seed
    worse = [
        {**r, "map50": 0.6 * FULL[r["seed"]]} if r["arm"] == "box/a" and r["round"] == 2 else r for r in rows
    ]
    assert "| box/a | 2 | 200 | 60.0% | image/y: 70.0% | -10.0 [-10.0 to -10.0] |" in summary(
        worse, "toy", [], pool_boxes=1000
    )
    no_image = [r for r in rows if not r["arm"].startswith("image/")]
    assert "At equal boxes" not in summary(no_image, "toy", [], pool_boxes=1000)


def test_a_probe_of_the_first_model_alone_reports_its_rounds_without_empty_level_tables() -> None:
    rows = [r for r in _rows(0) if r["arm"] in ("initial", "control")]
    text = summary(rows, "probe", [], pool_boxes=1000)
    assert "(no arm that obtains labels ran; this run has no fully supervised reference)" in text
    assert "## On ground-truth boxes" not in text and "## First touch" not in text
    assert "## After obtaining" not in text
    assert "## Round by round, against the control" in text
