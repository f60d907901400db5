"""Corrections (app/labels/corrections.py): the annotator who answered, or an admin, changes an answer with
``correct: true``; box, image and review answers, before and after the round closed. The box and the image
follow the new answer, the log keeps both (the new one a correction naming what it supersedes), the round's
counts count one answer, and the next round's training set trains the new one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from app.models import Box, Image, Project, Round
from app.rounds import snapshot
from app.rounds.training_set import training_set
from tests.conftest import auth
from tests.factories import create_project, register_images, seed_pool


def _lease(client, pid: int, unit: str | None = None, annotator: str = "ann") -> dict:
    body = {"k": 1, "annotator": annotator, **({"unit": unit} if unit else {})}
    [query] = client.post(f"/v1/projects/{pid}/queries", json=body).json()["queries"]
    return query


def _answer(client, pid: int, headers: dict | None = None, **answer) -> object:
    return client.post(f"/v1/projects/{pid}/labels", json={"labels": [answer]}, headers=headers or {})


def _events(client, pid: int) -> list[dict]:
    return client.get(f"/v1/projects/{pid}/labels").json()["items"]


def test_a_box_answer_is_corrected_and_the_log_keeps_both(client, database, tmp_path: Path) -> None:
    project = create_project(client)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 1)
    [box_id] = seed_pool(database, pid, [images[0]["id"]], 1)
    query = _lease(client, pid, "box")
    assert _answer(client, pid, query_id=query["query_id"], action="background").status_code == 200
    wrong = _answer(client, pid, query_id=query["query_id"], action="adjust", bbox=[1, 1, 9, 9], label="cat")
    assert wrong.status_code == 409 and '"correct": true' in wrong.json()["detail"]
    fixed = _answer(
        client, pid, query_id=query["query_id"], action="adjust", bbox=[1, 1, 9, 9], label="cat", correct=True
    )
    assert fixed.status_code == 200, fixed.text
    again = _answer(  # the corrected answer sent again: recorded once
        client, pid, query_id=query["query_id"], action="adjust", bbox=[1, 1, 9, 9], label="cat", correct=True
    )
    assert again.json()["labels"][0]["status"] == "already_recorded"
    box = client.get(f"/v1/projects/{pid}/images/{images[0]['id']}").json()["boxes"][0]
    assert (box["id"], box["status"], box["bbox"], box["label"]) == (box_id, "labeled", [1, 1, 9, 9], "cat")
    first, correction = _events(client, pid)
    assert (first["kind"], first["action"]) == ("answer", "background")
    assert (correction["kind"], correction["action"]) == ("correction", "adjust")
    assert correction["after"]["supersedes"] == first["id"] and correction["before"]["status"] == "background"
    with database.transaction(write=False) as session:
        cut = snapshot.last_event_id(session, pid)
        counts = snapshot.counts(session, pid, cut)
        [record] = training_set(session, pid, cut, lambda_d=0.5)
    assert counts.queries_answered == 1 and counts.boxes_obtained == 1  # one query, one box obtained
    assert [(b.bbox, b.label, b.noisy) for b in record.boxes] == [([1, 1, 9, 9], 0, False)]
    assert record.negatives == []  # no longer answered background


def test_only_the_annotator_who_answered_or_an_admin_corrects(client, database, tmp_path: Path) -> None:
    from app.auth.service import create_token

    project = create_project(client)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 1)
    seed_pool(database, pid, [images[0]["id"]], 2)
    with database.transaction() as session:
        _, ana = create_token(session, "ana", "annotator", [pid])
        _, bob = create_token(session, "bob", "annotator", [pid])
    query = client.post(
        f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "x"}, headers=auth(ana)
    ).json()["queries"][0]
    assert _answer(client, pid, auth(ana), query_id=query["query_id"], action="accept").status_code == 200
    other = _answer(client, pid, auth(bob), query_id=query["query_id"], action="background", correct=True)
    assert other.status_code == 403
    own = _answer(client, pid, auth(ana), query_id=query["query_id"], action="duplicate", correct=True)
    admin = _answer(client, pid, query_id=query["query_id"], action="background", correct=True)
    assert own.status_code == admin.status_code == 200
    assert [e["kind"] for e in _events(client, pid)] == ["answer", "correction", "correction"]


def _image_project(client, tmp_path: Path, unit: str) -> tuple[int, dict]:
    project = create_project(client, unit=unit)
    pid = project["id"]
    register_images(client, pid, tmp_path / unit, 2, prefix=unit)
    return pid, _lease(client, pid)


def test_an_image_answer_is_corrected_before_and_after_the_round_closed(
    client, database, tmp_path: Path
) -> None:
    pid, query = _image_project(client, tmp_path, "image")
    assert query["unit"] == "image"  # before any model: image queries
    one = [{"bbox": [2, 2, 20, 20], "label": "cat"}]
    two = [{"bbox": [2, 2, 20, 20], "label": "dog"}, {"bbox": [30, 10, 50, 40], "label": "cat"}]
    assert _answer(client, pid, query_id=query["query_id"], action="label_all", boxes=one).status_code == 200
    started = client.post(f"/v1/projects/{pid}/rounds", json={"force": True})
    assert started.status_code == 202, started.text  # the round closed with the first answer
    fixed = _answer(client, pid, query_id=query["query_id"], action="label_all", boxes=two, correct=True)
    assert fixed.status_code == 200, fixed.text
    detail = client.get(f"/v1/projects/{pid}/images/{query['image_id']}").json()
    assert detail["fully_labeled"] and sorted((b["bbox"], b["label"]) for b in detail["boxes"]) == sorted(
        (b["bbox"], b["label"]) for b in two
    )
    with database.transaction(write=False) as session:
        cut = snapshot.last_event_id(session, pid)
        [record] = training_set(session, pid, cut, lambda_d=0.5)  # the next round trains the correction
        image = session.get(Image, query["image_id"])
        first = session.scalar(
            select(Round.snapshot_event_id).where(Round.project_id == pid, Round.number == 1)
        )
    assert record.complete and sorted(b.label for b in record.boxes) == [0, 1]
    assert image.labeled_event_id <= first  # it counts as given when the first answer was
    assert [e["kind"] for e in _events(client, pid) if e["kind"] != "derived"] == ["answer", "correction"]


def test_a_review_is_corrected(client, database, tmp_path: Path) -> None:
    project = create_project(client, unit="review", review_min_score=0.5)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "review", 1)
    with database.transaction() as session:
        session.get(Project, pid).serving_round = 1  # a model's boxes are on the image (seed_pool's)
    boxes = seed_pool(database, pid, [images[0]["id"]], 2)
    query = _lease(client, pid)
    assert query["unit"] == "review" and sorted(p["box_id"] for p in query["predictions"]) == boxes
    keep_both = [{"box_id": b, "action": "accept"} for b in boxes]
    assert (
        _answer(
            client, pid, query_id=query["query_id"], action="review", reviewed=keep_both, boxes=[]
        ).status_code
        == 200
    )
    fixed = [{"box_id": boxes[0], "action": "accept"}, {"box_id": boxes[1], "action": "background"}]
    missed = [{"bbox": [40, 10, 60, 40], "label": "dog"}]
    response = _answer(
        client, pid, query_id=query["query_id"], action="review", reviewed=fixed, boxes=missed, correct=True
    )
    assert response.status_code == 200, response.text
    with database.transaction(write=False) as session:
        states = {b.id: b.status for b in session.scalars(select(Box).where(Box.image_id == images[0]["id"]))}
    assert states[boxes[0]] == "labeled" and states[boxes[1]] == "background"
    assert sorted(states.values()) == ["background", "labeled", "labeled"]  # the drawn one, once
