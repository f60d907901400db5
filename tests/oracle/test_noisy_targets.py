"""bench/noisy_targets.py on a hand-made run database whose answers are known: which objects an answer
labeled, which a noisy target covers, which train as background, and which images training holds."""

from __future__ import annotations

import sqlite3

from bench.noisy_targets import _arm, arm_row

SCHEMA = """
CREATE TABLE images (id INTEGER PRIMARY KEY, project_id INTEGER, split TEXT, external_id TEXT,
                     fully_labeled BOOLEAN);
CREATE TABLE boxes (id INTEGER PRIMARY KEY, project_id INTEGER, image_id INTEGER, source TEXT, status TEXT,
                    x1 REAL, y1 REAL, x2 REAL, y2 REAL, label INTEGER);
"""


def test_objects_and_noisy_targets_are_counted_against_the_truth() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.executemany(
        "INSERT INTO images VALUES (?, 1, ?, ?, ?)",
        [
            (1, "pool", "seed", True),  # initial, fully labeled
            (2, "pool", "a", False),  # one answer labeled, one background, one noisy on an object, one not
            (3, "pool", "b", False),  # only a background answer: it joins training all the same
            (4, "pool", "c", False),  # never answered: not in training, its predictions not targets
            (5, "test", "t", True),
        ],
    )
    db.executemany(
        "INSERT INTO boxes (project_id, image_id, source, status, x1, y1, x2, y2, label) "
        "VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, "ground_truth", "labeled", 0, 0, 10, 10, 0),
            (2, "predicted", "labeled", 0, 0, 10, 10, 0),  # adjusted onto object a0
            (2, "predicted", "background", 50, 50, 60, 60, 0),
            (2, "predicted", "unlabeled", 21, 20, 31, 30, 1),  # covers a1 (IoU 0.82, same class)
            (2, "predicted", "unlabeled", 40, 0, 50, 10, 1),  # on a2, but the wrong class
            (2, "predicted", "unlabeled", 80, 80, 90, 90, 0),  # on nothing
            (3, "predicted", "background", 0, 0, 5, 5, 0),
            (4, "predicted", "unlabeled", 0, 0, 10, 10, 0),
        ],
    )
    truth = {
        "seed": [([0, 0, 10, 10], 0)],
        "a": [([0, 0, 10, 10], 0), ([20, 20, 30, 30], 1), ([40, 0, 50, 10], 0)],
        "b": [([100, 100, 120, 120], 1)],
        "c": [([0, 0, 10, 10], 0)],
    }
    row = arm_row(db, 1, truth)
    assert row == {
        "queries answered": 3,
        "answered background": 2,
        "fully labeled images": 1,
        "joined images": 2,
        "objects in joined": 4,
        "labeled by an answer": 1,
        "covered by a noisy target": 1,
        "left unknown": 2,  # a2 (its prediction has the wrong class) and b0
        "noisy targets": 3,
        "noisy targets on an object": 1,
    }
    # pseudo-labels recomputed for the arm's last round stand in for the stored predictions: one on a2,
    # one on nothing; image c is not in training, so its pseudo-label does not count
    pseudo = {"a": [([40, 0, 50, 10], 0), ([80, 80, 90, 90], 0)], "c": [([0, 0, 10, 10], 0)]}
    row = arm_row(db, 1, truth, pseudo)
    assert (row["covered by a noisy target"], row["left unknown"]) == (1, 2)  # a2 now, a1 not
    assert (row["noisy targets"], row["noisy targets on an object"]) == (2, 1)


def test_an_arm_without_answers_trains_on_its_fully_labeled_images_alone() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(SCHEMA)
    db.execute("INSERT INTO images VALUES (1, 1, 'pool', 'seed', 1)")
    db.execute(
        "INSERT INTO boxes (project_id, image_id, source, status, x1, y1, x2, y2, label) "
        "VALUES (1, 1, 'ground_truth', 'labeled', 0, 0, 10, 10, 0)"
    )
    row = arm_row(db, 1, {"seed": [([0, 0, 10, 10], 0)]})
    assert row["fully labeled images"] == 1 and row["joined images"] == 0 and row["noisy targets"] == 0


def test_each_row_is_named_by_its_arm_as_the_reports_name_it() -> None:
    experiment = {"arms": [{"unit": "box", "strategy": "least_confidence_bg", "label": "box/new-soft"},
                           {"unit": "box", "strategy": "random", "label": "box/new-soft+balanced"},
                           {"unit": "auto", "strategy": "least_confidence_bg"}]}  # fmt: skip
    assert _arm("bccd-v3-1796623505-s1-box-new-soft", experiment) == "box/new-soft"
    assert _arm("p-12-s10-box-new-soft+balanced", experiment) == "box/new-soft+balanced"
    assert _arm("p-12-s0-auto-least_confidence_bg", experiment) == "auto/least_confidence_bg"
    assert _arm("p-12-s0-box-paper", experiment) == "p-12-s0-box-paper"  # not one of the run's arms
    several = {**experiment, "seeds": [0, 1]}  # one run of several seeds: a row per arm and seed
    assert _arm("p-12-s1-box-new-soft", several) == "box/new-soft, seed 1"
