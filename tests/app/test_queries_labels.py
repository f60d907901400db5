from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from app.models import Box, LabelEvent, Query, utcnow
from tests.factories import coco_for, create_project, db_state, import_coco, register_images, seed_pool


def _pool(
    client, database, tmp_path: Path, per_image: int = 3, images: int = 3, **settings
) -> tuple[dict, list]:
    project = create_project(client, **settings)
    registered = register_images(client, project["id"], tmp_path / "pool", images)
    box_ids = seed_pool(database, project["id"], [im["id"] for im in registered], per_image)
    return project, box_ids


def _lease(client, pid: int, k: int, annotator: str = "ann", **extra) -> list[dict]:
    response = client.post(f"/v1/projects/{pid}/queries", json={"k": k, "annotator": annotator, **extra})
    assert response.status_code == 200, response.text
    return response.json()["queries"]


def _label(client, pid: int, *labels: dict):
    return client.post(f"/v1/projects/{pid}/labels", json={"labels": list(labels)})


def test_leases_follow_informativeness_and_never_repeat(client, database, tmp_path: Path) -> None:
    project, box_ids = _pool(client, database, tmp_path)
    pid = project["id"]
    first = _lease(client, pid, 4, "alice", unit="box")
    second = _lease(client, pid, 10, "bob", unit="box")
    served = [q["box_id"] for q in first + second]
    # seed_pool gives later images and later boxes higher informativeness
    assert served == sorted(box_ids, key=lambda b: -[*box_ids].index(b))
    assert len(set(served)) == len(box_ids)
    assert _lease(client, pid, 5, unit="box") == []
    q = first[0]
    assert q["unit"] == "box" and q["label"] in ("cat", "dog") and q["round"] == 0
    assert q["image"]["url"].endswith("/content") and q["informativeness"] >= first[1]["informativeness"]
    assert set(q) >= {
        "query_id",
        "unit",
        "box_id",
        "image_id",
        "image",
        "bbox",
        "label",
        "score",
        "informativeness",
        "round",
        "expires_at",
    }


def test_released_and_expired_leases_return_to_the_queue(client, database, tmp_path: Path) -> None:
    project, _ = _pool(client, database, tmp_path, per_image=1, images=2)
    pid = project["id"]
    a, b = _lease(client, pid, 2, "alice", unit="box")
    assert client.delete(f"/v1/projects/{pid}/queries/{a['query_id']}").status_code == 204
    again = _lease(client, pid, 5, "bob", unit="box")
    assert [q["box_id"] for q in again] == [a["box_id"]]

    with database.transaction() as session:  # b's lease runs out
        session.execute(
            update(Box).where(Box.id == b["box_id"]).values(lease_expires_at=utcnow() - timedelta(1))
        )
        session.execute(
            update(Query).where(Query.id == b["query_id"]).values(expires_at=utcnow() - timedelta(1))
        )
    # an expired lease is still answerable while nobody else holds the box
    assert _label(client, pid, {"query_id": b["query_id"], "action": "background"}).status_code == 200
    # a given-back lease whose box went to someone else is not
    response = _label(client, pid, {"query_id": a["query_id"], "action": "accept"})
    assert response.status_code == 409 and "leased to another annotator" in response.json()["detail"]
    assert _label(client, pid, {"query_id": again[0]["query_id"], "action": "accept"}).status_code == 200
    assert _lease(client, pid, 5, unit="box") == []


def test_each_action_changes_the_box_and_is_logged(client, database, tmp_path: Path) -> None:
    project, _ = _pool(client, database, tmp_path, per_image=4, images=1)
    pid = project["id"]
    accept, adjust, background, duplicate = _lease(client, pid, 4, "carol")
    response = _label(
        client,
        pid,
        {"query_id": accept["query_id"], "action": "accept", "duration_ms": 1200},
        {"query_id": adjust["query_id"], "action": "adjust", "bbox": [1, 2, 30, 40], "label": "cat"},
        {"query_id": background["query_id"], "action": "background"},
        {"query_id": duplicate["query_id"], "action": "duplicate"},
    )
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["labels"]] == ["recorded"] * 4
    boxes = {
        b["id"]: b for b in client.get(f"/v1/projects/{pid}/images/{accept['image_id']}").json()["boxes"]
    }
    assert (
        boxes[accept["box_id"]]["status"] == "labeled" and boxes[accept["box_id"]]["bbox"] == accept["bbox"]
    )
    moved = boxes[adjust["box_id"]]
    assert (moved["status"], moved["bbox"], moved["label"]) == ("labeled", [1, 2, 30, 40], "cat")
    assert moved["predicted"] == {"bbox": adjust["bbox"], "label": ["cat", "dog"].index(adjust["label"])}
    assert moved["round_queried"] == 0 and moved["round_answered"] == 0
    assert boxes[background["box_id"]]["status"] == "background"
    assert boxes[duplicate["box_id"]]["status"] == "duplicate"

    events = client.get(f"/v1/projects/{pid}/labels").json()["items"]
    assert [(e["action"], e["annotator"], e["kind"]) for e in events] == [
        ("accept", "carol", "answer"),
        ("adjust", "carol", "answer"),
        ("background", "carol", "answer"),
        ("duplicate", "carol", "answer"),
    ]
    assert events[0]["duration_ms"] == 1200
    assert events[1]["before"]["bbox"] == adjust["bbox"] and events[1]["after"]["bbox"] == [1, 2, 30, 40]


def test_answers_are_idempotent_and_never_overwritten(client, database, tmp_path: Path) -> None:
    project, _ = _pool(client, database, tmp_path, per_image=1, images=1)
    pid = project["id"]
    (q,) = _lease(client, pid, 1)
    answer = {"query_id": q["query_id"], "action": "adjust", "bbox": [1, 1, 9, 9], "label": "dog"}
    first = _label(client, pid, answer).json()["labels"][0]
    repeat = _label(client, pid, {**answer, "duration_ms": 5}).json()["labels"][0]
    assert repeat["status"] == "already_recorded" and repeat["event_id"] == first["event_id"]
    before = db_state(database)
    response = _label(client, pid, {**answer, "label": "cat"})
    assert response.status_code == 409 and '"correct": true' in response.json()["detail"]
    assert db_state(database) == before
    with database.transaction() as session:
        assert session.query(LabelEvent).count() == 1


def test_bad_answers_are_rejected_and_change_nothing(client, database, tmp_path: Path) -> None:
    project, _ = _pool(client, database, tmp_path, per_image=2, images=1)
    pid = project["id"]
    other, _ = _pool(client, database, tmp_path / "other", per_image=1, images=1, name="other")
    q1, q2 = _lease(client, pid, 2)
    (foreign,) = _lease(client, other["id"], 1)
    before = db_state(database)
    qid = q1["query_id"]
    cases = [
        ({"query_id": 99999, "action": "accept"}, 404, "query 99999 does not exist"),
        ({"query_id": foreign["query_id"], "action": "accept"}, 404, "does not exist in project"),
        ({"query_id": qid, "action": "adjust", "bbox": [5, 5, 1, 9], "label": "cat"}, 422, "inverted width"),
        (
            {"query_id": qid, "action": "adjust", "bbox": [5, 5, 9, 5], "label": "cat"},
            422,
            "zero or inverted height",
        ),
        (
            {"query_id": qid, "action": "adjust", "bbox": [0, 0, 65, 10], "label": "cat"},
            422,
            "outside the 64x48",
        ),
        ({"query_id": qid, "action": "adjust", "bbox": [0, 0, 5], "label": "cat"}, 422, "bbox"),
        (
            {"query_id": qid, "action": "adjust", "bbox": [0, 0, 5, 5], "label": "horse"},
            422,
            "valid: ['cat', 'dog']",
        ),
        ({"query_id": qid, "action": "adjust", "bbox": [0, 0, 5, 5]}, 422, "adjust needs bbox and label"),
        ({"query_id": qid, "action": "accept", "bbox": [0, 0, 5, 5]}, 422, "use adjust"),
        ({"query_id": qid, "action": "label_all", "boxes": []}, 422, "label_all answers image queries"),
        ({"query_id": qid, "action": "maybe"}, 422, "labels[1].action"),
        ({"query_id": qid, "action": "accept", "duration_ms": -1}, 422, "duration_ms"),
    ]
    for label, status, words in cases:
        response = _label(client, pid, {"query_id": q2["query_id"], "action": "accept"}, label)
        assert response.status_code == status, (label, response.text)
        assert words in response.json()["detail"], (label, response.json())
    nan = client.post(
        f"/v1/projects/{pid}/labels",
        headers={"content-type": "application/json"},
        content=f'{{"labels": [{{"query_id": {qid}, "action": "adjust", "bbox": [NaN, 0, 5, 5], '
        f'"label": "cat"}}]}}',
    )
    assert nan.status_code == 422 and "finite" in nan.json()["detail"]
    assert _label(client, pid).status_code == 422  # no labels at all
    assert db_state(database) == before


def test_image_queries_label_whole_images(client, database, tmp_path: Path) -> None:
    project, _ = _pool(client, database, tmp_path, per_image=2, images=2, unit="image")
    pid = project["id"]
    (q,) = _lease(client, pid, 1)
    assert q["unit"] == "image" and q["box_id"] is None and len(q["predictions"]) == 2
    hint = q["predictions"][0]["bbox"]
    response = _label(
        client,
        pid,
        {
            "query_id": q["query_id"],
            "action": "label_all",
            "boxes": [{"bbox": hint, "label": "dog"}, {"bbox": [40, 30, 60, 45], "label": "cat"}],
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()["labels"][0]
    assert len(result["box_ids"]) == 2 and len(result["resolved_box_ids"]) == 2
    image = client.get(f"/v1/projects/{pid}/images/{q['image_id']}").json()
    statuses = sorted((b["source"], b["status"]) for b in image["boxes"])
    assert image["fully_labeled"]
    assert statuses == [
        ("annotator", "labeled"),
        ("annotator", "labeled"),
        ("predicted", "background"),
        ("predicted", "duplicate"),
    ]
    (nxt,) = _lease(client, pid, 5)
    assert nxt["image_id"] != q["image_id"]
    # box queries are still available to a client that asks for them
    assert len(_lease(client, pid, 5, unit="box")) == 2


def test_suppress_duplicates_resolves_overlapping_boxes(client, database, tmp_path: Path) -> None:
    project = create_project(client, suppress_duplicates_iou=0.5)
    pid = project["id"]
    (image,) = register_images(client, pid, tmp_path / "pool", 1)
    from app.models import Box as BoxModel

    with database.transaction() as session:
        for x1, info in [(10, 0.9), (11, 0.5), (40, 0.4)]:
            session.add(
                BoxModel(
                    project_id=pid,
                    image_id=image["id"],
                    source="predicted",
                    status="unlabeled",
                    x1=x1,
                    y1=10,
                    x2=x1 + 20,
                    y2=30,
                    label=0,
                    score=0.5,
                    informativeness=info,
                )
            )
    (q,) = _lease(client, pid, 1, unit="box")
    response = _label(client, pid, {"query_id": q["query_id"], "action": "accept"})
    assert len(response.json()["labels"][0]["resolved_box_ids"]) == 1
    remaining = _lease(client, pid, 5, unit="box")
    assert len(remaining) == 1 and remaining[0]["bbox"][0] == 40
    derived = [e for e in client.get(f"/v1/projects/{pid}/labels").json()["items"] if e["kind"] == "derived"]
    assert derived[0]["action"] == "duplicate" and "IoU" in derived[0]["after"]["reason"]


def test_seed_round_serves_random_image_queries_then_starts_round_one(
    client, database, tmp_path: Path
) -> None:
    project = create_project(client, seed_images=2)
    pid = project["id"]
    register_images(client, pid, tmp_path / "pool", 5)
    queries = _lease(client, pid, 10)
    assert len(queries) == 2 and {q["unit"] for q in queries} == {"image"}
    assert _lease(client, pid, 10) == []  # never more seed queries than seed_images
    answers = [
        {"query_id": q["query_id"], "action": "label_all", "boxes": [{"bbox": [1, 1, 9, 9], "label": "cat"}]}
        for q in queries
    ]
    response = _label(client, pid, *answers)
    assert response.status_code == 200
    assert response.json()["round_started"] and response.json()["round"] == 1
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert [(r["round"], r["state"]) for r in rounds] == [(0, "closed"), (1, "training")]
    assert rounds[1]["boxes_obtained"] == 2 and rounds[1]["images_labeled"] == 2
    assert client.get(f"/v1/jobs/{rounds[1]['job_id']}").json()["state"] == "queued"


def test_round_size_answers_close_the_round(client, database, tmp_path: Path) -> None:
    project = create_project(client, round_size=3)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 3)
    import_coco(client, pid, coco_for(images[:1], {"img00000": [([1, 1, 9, 9], "cat")]}, ["cat", "dog"]))
    seed_pool(database, pid, [images[1]["id"], images[2]["id"]], 2)
    queries = _lease(client, pid, 4)
    first = _label(client, pid, *[{"query_id": q["query_id"], "action": "background"} for q in queries[:2]])
    assert not first.json()["round_started"]
    second = _label(client, pid, {"query_id": queries[2]["query_id"], "action": "accept"})
    assert second.json()["round_started"] and second.json()["round"] == 1
    # answers keep being taken while the next round trains
    assert _label(client, pid, {"query_id": queries[3]["query_id"], "action": "accept"}).status_code == 200


def test_image_review_records_each_action_and_counts_on_every_axis(client, database, tmp_path: Path) -> None:
    """unit review: an image arrives with the model's confident boxes; the answer accepts, fixes or deletes
    each and draws the missing objects, in one event whose seconds the round counts."""
    project, box_ids = _pool(client, database, tmp_path, per_image=3, images=2, unit="review")
    pid = project["id"]
    with database.transaction() as session:  # a prediction below review_min_score (0.5) is not drawn
        session.execute(update(Box).where(Box.id.in_(box_ids[2::3])).values(score=0.3))
    initial = register_images(client, pid, tmp_path / "init", 1, prefix="i")  # a round needs a labeled set
    import_coco(client, pid, coco_for(initial, {}, ["cat", "dog"]))
    (q,) = _lease(client, pid, 1)
    assert q["unit"] == "review" and q["box_id"] is None
    drawn = q["predictions"]
    assert len(drawn) == 2 and all(p["score"] >= 0.5 and p["box_id"] in box_ids for p in drawn)
    before = db_state(database)
    other_image = next(b for b in box_ids if b not in {p["box_id"] for p in drawn} and b not in box_ids[2::3])
    bad = [
        ({"action": "review", "boxes": [], "reviewed": [{"box_id": other_image, "action": "accept"}]}, 422),
        ({"action": "label_all", "boxes": []}, 422),  # a review query is answered with review
        ({"action": "review", "boxes": []}, 422),  # no verdicts
        (
            {
                "action": "review",
                "boxes": [],
                "reviewed": [{"box_id": drawn[0]["box_id"], "action": "accept"}] * 2,
            },
            422,
        ),
        # adjust without the box it was fixed to
        (
            {
                "action": "review",
                "boxes": [],
                "reviewed": [{"box_id": drawn[0]["box_id"], "action": "adjust"}],
            },
            422,
        ),
    ]
    for body, status in bad:
        response = _label(client, pid, {"query_id": q["query_id"], **body})
        assert response.status_code == status, (body, response.text)
    assert db_state(database) == before
    answer = {
        "query_id": q["query_id"],
        "action": "review",
        "reviewed": [
            {"box_id": drawn[0]["box_id"], "action": "accept"},
            {"box_id": drawn[1]["box_id"], "action": "adjust", "bbox": [8.0, 2, 14, 21], "label": "cat"},
        ],
        "boxes": [{"bbox": [40, 30, 60, 45], "label": "dog"}],
        "duration_ms": 11_200,  # 1.0 s + 1.6 accept + 7.0 fix ... as the annotator took it
    }
    response = _label(client, pid, answer)
    assert response.status_code == 200, response.text
    result = response.json()["labels"][0]
    assert result["box_ids"][:2] == [drawn[0]["box_id"], drawn[1]["box_id"]] and len(result["box_ids"]) == 3
    assert len(result["resolved_box_ids"]) == 1  # the low-score prediction nobody was shown
    assert _label(client, pid, answer).json()["labels"][0]["status"] == "already_recorded"
    image = client.get(f"/v1/projects/{pid}/images/{q['image_id']}").json()
    assert image["fully_labeled"]
    by_id = {b["id"]: b for b in image["boxes"]}
    kept, fixed = by_id[drawn[0]["box_id"]], by_id[drawn[1]["box_id"]]
    assert kept["status"] == "labeled" and kept["bbox"] == drawn[0]["bbox"]
    assert fixed["bbox"] == [8.0, 2.0, 14.0, 21.0] and fixed["label"] == "cat"
    events = client.get(f"/v1/projects/{pid}/labels").json()["items"]
    review = [e for e in events if e["action"] == "review"]
    assert len(review) == 1 and review[0]["duration_ms"] == 11_200
    project_now = client.get(f"/v1/projects/{pid}").json()
    assert (project_now["answers_this_round"], project_now["boxes_this_round"]) == (1, 3)
    started = client.post(f"/v1/projects/{pid}/rounds")
    assert started.status_code == 202, started.text
    latest = client.get(f"/v1/projects/{pid}/rounds").json()["items"][-1]
    assert (latest["queries_answered"], latest["seconds"]) == (1, 11.2)
    assert latest["boxes_obtained"] == 3  # accepted, fixed, drawn (the initial image has none)
