"""``unit: auto`` (app/rounds/unit.py): the rule on constructed completed images, flipping at its documented
thresholds; and through the API, a round of a unit-auto project records the unit it serves and why, and
its queries are of that unit."""

from __future__ import annotations

import pytest

from app.projects.schemas import ProjectSettings
from app.rounds.unit import Completed, decide, tally

SETTINGS = ProjectSettings(unit="auto", t_d=0.05, query_min_score=0.5, review_min_score=0.5)


def _image(objects: int, found: int, wrong: int, *, score: float = 0.9) -> Completed:
    """``objects`` objects 20 px apart; the model found ``found`` of them exactly (right class) and drew
    ``wrong`` boxes on nothing."""
    boxes = [([40.0 * i, 0.0, 40.0 * i + 20, 20.0], 0) for i in range(objects)]
    hits = [(box, label, score) for box, label in boxes[:found]]
    misses = [([40.0 * i, 100.0, 40.0 * i + 20, 120.0], 0, score) for i in range(wrong)]
    return Completed(predictions=hits + misses, objects=boxes)


def _choice(images: list[Completed], settings: ProjectSettings = SETTINGS) -> dict:
    return decide(tally(images, settings), len(images), settings)


def test_before_enough_images_are_measured_review_is_served() -> None:
    choice = _choice([_image(10, 10, 0)] * 4)
    assert choice["unit"] == "review" and "4 completed images measured, fewer than 5" in choice["reason"]


def test_a_weak_model_is_reviewed_or_drawn_a_strong_one_verified_box_by_box() -> None:
    weak = _choice([_image(10, 4, 6)] * 8)  # recall 0.4, and half of what it draws is wrong
    assert weak["unit"] in ("review", "image") and weak["recall"] == pytest.approx(0.4)
    assert weak["reason"].startswith(f"{weak['unit']}: recall 0.40 < 0.70")
    strong = _choice([_image(10, 10, 0)] * 8)  # finds every object, nothing wrong: a box is one check
    assert strong["unit"] == "box" and strong["box_precision"] == 1.0
    assert strong["seconds_per_box"] == {"box": 1.6, "image": 7.1, "review": 1.7}
    assert strong["reason"] == "box: 1.6 s per box against review 1.7 s, image 7.1 s (recall 1.00 >= 0.70)"


def test_the_recall_gate_flips_the_unit_at_its_threshold() -> None:
    at = _choice([_image(10, 7, 0)] * 8)  # recall exactly 0.70: box queries allowed
    below = _choice([_image(100, 69, 0)] * 8)  # 0.69
    assert at["unit"] == "box" and at["recall"] == pytest.approx(0.7)
    assert below["unit"] == "review" and "recall 0.69 < 0.70" in below["reason"]
    lenient = SETTINGS.model_copy(update={"auto_min_recall": 0.6})
    assert _choice([_image(100, 69, 0)] * 8, lenient)["unit"] == "box"


def test_precision_decides_between_review_and_drawing() -> None:
    """A model that finds few objects and draws many wrong boxes costs a review more than drawing."""
    noisy = _choice([_image(4, 1, 12)] * 8)  # 12 deletions and 3 objects drawn per image anyway
    assert noisy["unit"] == "image"
    assert noisy["seconds_per_box"]["review"] > noisy["seconds_per_box"]["image"]
    assert noisy["review_precision"] == pytest.approx(1 / 13, abs=1e-3)


def test_the_teams_own_costs_move_the_choice() -> None:
    """A team whose tool draws a box in 2 s and checks one in 3 s: drawing whole images pays, even with
    a model that finds everything."""
    costs = {"verify_s": 3.0, "draw_s": 2.0, "image_s": 0.5}
    fast_drawing = ProjectSettings.model_validate({**SETTINGS.model_dump(), "annotator_costs": costs})
    choice = _choice([_image(10, 10, 0)] * 8, fast_drawing)
    assert choice["unit"] == "image"
    assert choice["seconds_per_box"] == {"box": 3.0, "image": 2.05, "review": 3.05}


def test_its_settings_are_validated_and_a_teams_costs_change_figure_by_figure(client) -> None:
    views = client.post(
        "/v1/projects",
        json={"name": "a", "classes": ["c"], "settings": {"unit": "auto", "strategy": "consistency"}},
    )
    assert views.status_code == 422 and "needs unit box" in views.json()["detail"]
    gate = client.post(
        "/v1/projects", json={"name": "a", "classes": ["c"], "settings": {"auto_min_recall": 1.5}}
    )
    assert gate.status_code == 422 and "auto_min_recall" in gate.json()["detail"]
    project = client.post("/v1/projects", json={"name": "a", "classes": ["c"], "settings": {"unit": "auto"}})
    pid = project.json()["id"]
    assert project.json()["settings"]["annotator_costs"] == {"verify_s": 1.6, "draw_s": 7.0, "image_s": 1.0}
    for change, expected in (
        ({"draw_s": 9.0}, {"verify_s": 1.6, "draw_s": 9.0, "image_s": 1.0}),
        ({"verify_s": 2.0}, {"verify_s": 2.0, "draw_s": 9.0, "image_s": 1.0}),  # draw_s kept
    ):
        patched = client.patch(f"/v1/projects/{pid}", json={"settings": {"annotator_costs": change}})
        assert patched.status_code == 200, patched.text
        assert patched.json()["settings"]["annotator_costs"] == expected
    bad = client.patch(f"/v1/projects/{pid}", json={"settings": {"annotator_costs": {"draw_s": 0}}})
    assert bad.status_code == 422 and "draw_s" in bad.json()["detail"]
