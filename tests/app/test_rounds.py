from __future__ import annotations

from pathlib import Path

import pytest
from kombu import Connection

from app.enqueue import TASK_RUN_ROUND, celery_config
from app.errors import Conflict
from app.jobs import service as jobs
from app.models import Project, Round
from app.projects.service import get_project
from app.rounds import results, service
from app.rounds.class_counts import class_counts
from app.rounds.training_set import training_set
from tests.factories import coco_for, create_project, import_coco, register_images, seed_pool


def _broker_messages(settings) -> list[dict]:
    config = celery_config(settings)
    with Connection("filesystem://", transport_options=config["broker_transport_options"]) as conn:
        queue = conn.SimpleQueue("boxal")
        messages = []
        while True:
            try:
                message = queue.get(timeout=0.5)
            except queue.Empty:
                break
            messages.append({"task": message.headers["task"], "args": message.payload[0]})
            message.ack()
        queue.close()
    return messages


def _project_with_seed(client, database, tmp_path: Path, **settings) -> tuple[dict, list[dict]]:
    project = create_project(client, **settings)
    images = register_images(client, project["id"], tmp_path / "pool", 4)
    register_images(client, project["id"], tmp_path / "test", 1, split="test", prefix="t")
    import_coco(
        client, project["id"], coco_for(images[:1], {"img00000": [([1, 1, 9, 9], "cat")]}, ["cat", "dog"])
    )
    return project, images


def test_starting_a_round_records_a_job_and_enqueues_it_by_name(client, database, settings, tmp_path) -> None:
    project, _ = _project_with_seed(client, database, tmp_path)
    pid = project["id"]
    response = client.post(f"/v1/projects/{pid}/rounds")
    assert response.status_code == 202, response.text
    started = response.json()
    assert started["round"] == 1
    assert _broker_messages(settings) == [{"task": TASK_RUN_ROUND, "args": [started["job_id"]]}]
    job = client.get(f"/v1/jobs/{started['job_id']}").json()
    assert (job["state"], job["kind"], job["round"]) == ("queued", "round", 1)
    again = client.post(f"/v1/projects/{pid}/rounds")
    assert again.status_code == 409 and "still training" in again.json()["detail"]
    assert client.get("/v1/jobs/nope").status_code == 404


def test_nothing_to_train_on_is_a_conflict(client, tmp_path) -> None:
    project = create_project(client)
    register_images(client, project["id"], tmp_path / "pool", 2)
    response = client.post(f"/v1/projects/{project['id']}/rounds")
    assert response.status_code == 409 and "nothing to train on" in response.json()["detail"]


def test_worker_reports_walk_a_round_to_open(client, database, settings, tmp_path) -> None:
    project, images = _project_with_seed(client, database, tmp_path, round_size=2)
    pid = project["id"]
    started = client.post(f"/v1/projects/{pid}/rounds").json()
    job_id = started["job_id"]
    with database.transaction() as session:
        round_id = session.query(Round).filter_by(project_id=pid, number=1).one().id
        jobs.job_started(session, job_id, "worker-a")
        jobs.job_progress(session, job_id, stage="training", epoch=1, epochs=2)
        results.training_finished(session, round_id, "r1-abc")
        results.training_finished(session, round_id, "r1-abc")  # a repeated report is a no-op
        created = results.record_predictions(
            session,
            round_id,
            images[1]["id"],
            [
                {"bbox": [1, 1, 10, 10], "label": 0, "score": 0.9, "probs": [0.9, 0.1]},
                {"bbox": [20, 5, 30, 30], "label": 1, "score": 0.4, "probs": [0.6, 0.4]},
            ],
            "r1-abc",
        )
        again = results.record_predictions(  # the shard ran twice: replaced, not doubled
            session,
            round_id,
            images[1]["id"],
            [
                {"bbox": [1, 1, 10, 10], "label": 0, "score": 0.9, "probs": [0.9, 0.1]},
                {"bbox": [20, 5, 30, 30], "label": 1, "score": 0.4, "probs": [0.6, 0.4]},
            ],
            "r1-abc",
        )
        jobs.plan_shards(session, round_id, "score", 2)
        results.record_scores(session, round_id, {again[0]: 0.1, again[1]: 0.6}, {images[1]["id"]: 0.35})
        results.record_scores(session, round_id, {again[0]: 0.1, again[1]: 0.6}, {images[1]["id"]: 0.35})
        assert not jobs.shard_finished(session, round_id, "score", 0)
        assert jobs.shard_finished(session, round_id, "score", 1)
    assert len(created) == len(again) == 2
    assert len(client.get(f"/v1/projects/{pid}/images/{images[1]['id']}").json()["boxes"]) == 2
    # hidden until the ranking is applied
    hidden = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "unit": "box"})
    assert hidden.json()["queries"] == [] and "every query of round 0" in hidden.json()["reason"]
    with database.transaction() as session:
        results.apply_ranking(session, round_id)
        results.apply_ranking(session, round_id)
        per_class = [
            {"class": name, "ap": 0.2, "ap50": 0.4, "labeled": 1, "noisy": 0, "queued": 2, "test_boxes": 3}
            for name in ("cat", "dog")
        ]
        results.record_evaluation(session, round_id, {"map": 0.25, "map50": 0.5, "per_class": per_class})
        jobs.job_succeeded(session, job_id)
    leased = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "unit": "box"})
    queries = leased.json()["queries"]
    assert [q["box_id"] for q in queries] == [again[1], again[0]]
    assert queries[0]["round"] == 1 and queries[0]["informativeness"] == 0.6
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert rounds[1]["state"] == "open" and rounds[1]["model_version"] == "r1-abc"
    assert rounds[1]["pool"] == {"unlabeled_boxes": 2}
    curve = client.get(f"/v1/projects/{pid}/curve").json()["points"]
    assert curve == [
        {
            "round": 1,
            "boxes_obtained": 1,
            "queries_answered": 0,
            "seconds": 0.0,
            "map": 0.25,
            "map50": 0.5,
            "model_version": "r1-abc",
            "notice": None,
            "warning": None,  # no mAP drop against an earlier round
            "note": None,
            "unit": None,  # a project of a fixed unit: no choice to record
            "unit_reason": None,
            "per_class": per_class,
        }
    ]
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "succeeded" and job["attempts"] == 1


def test_a_failed_job_keeps_the_old_ranking_and_the_round_is_retryable(client, database, settings, tmp_path):
    project, images = _project_with_seed(client, database, tmp_path)
    pid = project["id"]
    seed_pool(database, pid, [images[2]["id"]], 2)
    started = client.post(f"/v1/projects/{pid}/rounds").json()
    with database.transaction() as session:
        jobs.job_started(session, started["job_id"], "w")
        jobs.job_failed(session, started["job_id"], "CUDA out of memory")
    job = client.get(f"/v1/jobs/{started['job_id']}").json()
    assert job["state"] == "failed" and job["error"] == "CUDA out of memory"
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert rounds[-1]["state"] == "failed" and rounds[-1]["error"] == "CUDA out of memory"
    body = {"annotator": "a", "unit": "box"}  # the old ranking's two box queries still serve
    assert len(client.post(f"/v1/projects/{pid}/queries", json=body).json()["queries"]) == 2
    retry = client.post(f"/v1/projects/{pid}/rounds")
    assert (
        retry.status_code == 202
        and retry.json()["round"] == 1
        and retry.json()["job_id"] != started["job_id"]
    )
    _broker_messages(settings)


def test_training_set_is_the_snapshot_taken_at_close(client, database, tmp_path) -> None:
    """Labeled boxes weight 1, unlabeled predictions noisy, background excluded, later answers not seen."""
    project, images = _project_with_seed(client, database, tmp_path)
    pid = project["id"]
    box_ids = seed_pool(database, pid, [images[1]["id"], images[2]["id"]], 3)
    queries = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "k": 6}).json()["queries"]
    by_box = {q["box_id"]: q for q in queries}
    # image 2 (higher informativeness, served first): one adjusted, one background, one left
    img2 = [b for b in box_ids[3:]]
    client.post(
        f"/v1/projects/{pid}/labels",
        json={
            "labels": [
                {
                    "query_id": by_box[img2[0]]["query_id"],
                    "action": "adjust",
                    "bbox": [0, 0, 8, 8],
                    "label": "dog",
                },
                {"query_id": by_box[img2[1]]["query_id"], "action": "background"},
            ]
        },
    )
    client.post(f"/v1/projects/{pid}/rounds")
    # answered after the close: must not change what round 1 trains on
    client.post(
        f"/v1/projects/{pid}/labels",
        json={
            "labels": [
                {
                    "query_id": by_box[img2[2]]["query_id"],
                    "action": "adjust",
                    "bbox": [30, 1, 40, 9],
                    "label": "cat",
                },
                {"query_id": by_box[box_ids[0]]["query_id"], "action": "accept"},
            ]
        },
    )
    with database.transaction() as session:
        round_ = session.query(Round).filter_by(project_id=pid, number=1).one()
        records = training_set(session, pid, round_.snapshot_event_id, lambda_d=0.5)
        training = {t.image_id: t for t in records}
    assert set(training) == {images[0]["id"], images[2]["id"]}  # image 1 got its label after the close
    boxes = training[images[2]["id"]].boxes
    assert [(b.box_id, b.noisy, b.label) for b in boxes] == [(img2[0], False, 1), (img2[2], True, 0)]
    assert boxes[0].bbox == [0, 0, 8, 8]
    assert boxes[1].bbox == [14.0, 2.0, 19.0, 20.0]  # predicted coordinates, not the later answer
    assert [(b.noisy, b.bbox) for b in training[images[0]["id"]].boxes] == [(False, [1, 1, 9, 9])]


def test_class_counts_are_the_round_training_set_and_the_queue_by_class(client, database, tmp_path) -> None:
    project, images = _project_with_seed(client, database, tmp_path)  # img00000: one cat, fully labeled
    pid = project["id"]
    box_ids = seed_pool(database, pid, [images[1]["id"], images[2]["id"]], 3)  # labels cat, dog, cat
    queries = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "k": 2}).json()["queries"]
    labels = [
        {"query_id": queries[0]["query_id"], "action": "adjust", "bbox": [0, 0, 8, 8], "label": "dog"},
        {"query_id": queries[1]["query_id"], "action": "background"},
    ]
    client.post(f"/v1/projects/{pid}/labels", json={"labels": labels}).raise_for_status()
    client.post(f"/v1/projects/{pid}/rounds")
    with database.transaction() as session:
        round_ = session.query(Round).filter_by(project_id=pid, number=1).one()
        counts = class_counts(session, pid, round_.snapshot_event_id, ["cat", "dog"], "answered")
    # trained on: img00000's cat, the adjusted dog, and the third box of its image (noisy, a cat);
    # queued: img00001's three predictions and that one noisy box (nobody answered them)
    assert [(c["class"], c["labeled"], c["noisy"], c["queued"]) for c in counts] == [
        ("cat", 1, 1, 3),
        ("dog", 1, 0, 1),
    ]
    assert len(box_ids) == 6


@pytest.mark.parametrize("mode", ["answered", "labeled"])
def test_an_image_answered_only_background_trains_with_that_box_as_a_negative(
    client, database, tmp_path, mode: str
) -> None:
    """The paper: every image with an answered box joins L_I; its background answers are negatives.
    training_images=labeled keeps the old behaviour (such an image does not train)."""
    project, images = _project_with_seed(client, database, tmp_path, training_images=mode)
    pid = project["id"]
    first, second = seed_pool(database, pid, [images[1]["id"]], 2)
    (query,) = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "k": 1}).json()["queries"]
    assert query["box_id"] == second  # the more informative one
    client.post(
        f"/v1/projects/{pid}/labels",
        json={"labels": [{"query_id": query["query_id"], "action": "background"}]},
    ).raise_for_status()
    assert client.post(f"/v1/projects/{pid}/rounds").status_code == 202
    with database.transaction() as session:
        round_ = session.query(Round).filter_by(project_id=pid, number=1).one()
        records = training_set(session, pid, round_.snapshot_event_id, lambda_d=0.5, images=mode)  # type: ignore[arg-type]
    training = {r.image_id: r for r in records}
    if mode == "labeled":
        assert set(training) == {images[0]["id"]} and round_.images_labeled == 1
        return
    assert set(training) == {images[0]["id"], images[1]["id"]} and round_.images_labeled == 2
    record = training[images[1]["id"]]
    assert record.negatives == [query["bbox"]]
    assert [(b.box_id, b.noisy, b.weight) for b in record.boxes] == [(first, True, 0.5)]
    assert training[images[0]["id"]].negatives == []


def test_concurrent_closers_cannot_both_start_a_round(database, client, tmp_path) -> None:
    project, _ = _project_with_seed(client, database, tmp_path)
    with database.transaction() as session:
        service.start_next_round(session, get_project(session, project["id"]))
    with database.transaction() as session, pytest.raises(Conflict):
        service.start_next_round(session, session.get(Project, project["id"]))


def test_a_boxes_budget_closes_the_round_after_k_boxes_obtained_not_k_answers(
    client, database, tmp_path
) -> None:
    project, images = _project_with_seed(client, database, tmp_path, round_budget="boxes", round_size=2)
    pid = project["id"]
    seed_pool(database, pid, [images[1]["id"], images[2]["id"]], 3)
    queries = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "k": 6}).json()["queries"]

    def answer(query: dict, action: str) -> dict:
        label = {"query_id": query["query_id"], "action": action}
        response = client.post(f"/v1/projects/{pid}/labels", json={"labels": [label]})
        assert response.status_code == 200, response.text
        return response.json()

    assert not any(answer(q, "background")["round_started"] for q in queries[:3])  # 3 answers, 0 boxes
    assert client.get(f"/v1/projects/{pid}").json()["boxes_this_round"] == 0
    assert not answer(queries[3], "accept")["round_started"]
    assert client.get(f"/v1/projects/{pid}").json()["boxes_this_round"] == 1
    assert answer(queries[4], "accept")["round_started"]  # the second box obtained closes round 0
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert [r["state"] for r in rounds] == ["closed", "training"] and rounds[1]["queries_answered"] == 5


def test_a_box_round_with_no_box_queries_serves_image_queries_and_says_why(
    client, database, tmp_path
) -> None:
    project, _ = _project_with_seed(client, database, tmp_path, round_size=5, t_d=0.3)
    pid = project["id"]
    started = client.post(f"/v1/projects/{pid}/rounds").json()
    with database.transaction() as session:
        round_id = session.query(Round).filter_by(project_id=pid, number=1).one().id
        jobs.job_started(session, started["job_id"], "w")
        results.training_finished(session, round_id, "r1-empty")
        results.apply_ranking(session, round_id)  # the model predicted nothing: the pool has no boxes
    (round_1,) = [r for r in client.get(f"/v1/projects/{pid}/rounds").json()["items"] if r["round"] == 1]
    notice = round_1["notice"]
    assert round_1["state"] == "open" and "predicted no box" in notice and "t_d = 0.3" in notice
    assert "image queries" in notice and "pretrained" in notice
    assert client.get(f"/v1/projects/{pid}").json()["notice"] == notice
    served = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "a", "k": 2}).json()["queries"]
    assert [q["unit"] for q in served] == ["image", "image"]  # 3 pool images are not fully labeled
    asked = client.post(f"/v1/projects/{pid}/queries", json={"annotator": "b", "k": 2, "unit": "box"})
    assert asked.json()["queries"] == []  # a client that asks for boxes gets boxes only
    answered = client.post(
        f"/v1/projects/{pid}/labels",
        json={"labels": [{"query_id": served[0]["query_id"], "action": "label_all", "boxes": []}]},
    )
    assert answered.status_code == 200, answered.text


def test_the_served_ranking_switches_by_one_row_and_older_scores_go_in_batches(
    client, database, tmp_path
) -> None:
    from sqlalchemy import func, select

    from app.models import Box, BoxScore
    from app.rounds import ranking

    project, images = _project_with_seed(client, database, tmp_path)
    pid = project["id"]
    boxes = seed_pool(database, pid, [images[1]["id"], images[2]["id"]], 3)  # own values rise with id
    own = {b: float(images[1 + i // 3]["id"] * 1000 + i % 3) for i, b in enumerate(boxes)}

    leased: list[int] = []

    def lease(k: int) -> list[tuple[int, float]]:
        body = {"k": k, "annotator": "a", "unit": "box"}
        queries = client.post(f"/v1/projects/{pid}/queries", json=body).json()["queries"]
        leased[:] = [q["query_id"] for q in queries]
        return [(q["box_id"], q["informativeness"]) for q in queries]

    assert lease(1) == [(boxes[-1], own[boxes[-1]])]  # before any round: the boxes' own values
    assert client.delete(f"/v1/projects/{pid}/queries/{leased[0]}").status_code == 204
    started = client.post(f"/v1/projects/{pid}/rounds").json()
    with database.transaction() as session:
        round_id = session.query(Round).filter_by(project_id=pid, number=1).one().id
        results.training_finished(session, round_id, "r1")
        # round 1 ranks them the other way round, and leaves the last box unscored
        results.record_scores(session, round_id, {b: 0.1 * (6 - i) for i, b in enumerate(boxes[:5])})
        results.apply_ranking(session, round_id)
        jobs.job_succeeded(session, started["job_id"])
    served = lease(3)
    assert [b for b, _ in served] == boxes[:3]
    assert [round(v, 6) for _, v in served] == [0.6, 0.5, 0.4]
    # the rest of the ranking, then the box no round scored, by its own value
    assert lease(3) == [
        (boxes[3], pytest.approx(0.3)),
        (boxes[4], pytest.approx(0.2)),
        (boxes[5], own[boxes[5]]),
    ]
    with database.transaction(write=False) as session:
        kept = dict(session.execute(select(Box.id, Box.informativeness).where(Box.id.in_(boxes))).all())
    assert kept == own  # the switch wrote no box row
    detail = client.get(f"/v1/projects/{pid}/images/{images[1]['id']}").json()
    assert [round(b["informativeness"], 6) for b in detail["boxes"]] == [0.6, 0.5, 0.4]

    with database.transaction() as session:
        round2, _ = service.start_next_round(session, get_project(session, pid))
        results.training_finished(session, round2.id, "r2")
        results.record_scores(session, round2.id, {b: 0.5 for b in boxes})
        results.apply_ranking(session, round2.id)
    dropped = []
    while True:
        with database.transaction() as session:
            n = ranking.drop_superseded(session, pid, 2, limit=2)
        if not n:
            break
        dropped.append(n)
    assert dropped == [2, 2, 1]
    with database.transaction(write=False) as session:
        staged = dict(
            session.execute(select(BoxScore.round_id, func.count()).group_by(BoxScore.round_id)).all()
        )
    assert staged == {round2.id: 6}  # the serving round's ranking stays whole


def test_a_test_image_with_no_object_is_evaluated_and_one_without_truth_is_counted(
    client, database, tmp_path
) -> None:
    """A test image whose imported ground truth holds no object is evaluated (its detections are false
    positives), not dropped; a test image with no ground truth imported is counted for the round's note."""
    from tests.factories import coco_for, create_project, import_coco, register_images

    pid = create_project(client)["id"]
    test = register_images(client, pid, tmp_path / "test", 3, split="test", prefix="t")
    import_coco(client, pid, coco_for(test[:2], {"t00000": [([1, 1, 9, 9], "cat")]}, ["cat", "dog"]))
    with database.transaction(write=False) as session:
        evaluated = results.evaluation_set(session, pid)
        missing = results.test_images_without_truth(session, pid)
    assert [(image.external_id, len(boxes)) for image, boxes in evaluated] == [("t00000", 1), ("t00001", 0)]
    assert missing == 1
