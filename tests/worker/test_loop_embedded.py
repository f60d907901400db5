"""The active-learning loop end to end in the embedded mode: `boxal serve` with its own worker process,
SQLite, and the serverless filesystem broker."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from oracle.digits import generate
from tests.worker.loop import (
    HEADERS,
    ROOT,
    TOKEN,
    annotator_answer,
    boxal,
    digit_project,
    free_port,
    start,
    stop,
    wait_http,
    wait_job,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("scenes"), train_images=20, test_images=6, size=96, seed=1)


@pytest.fixture
def embedded(tmp_path: Path, scenes):
    port = free_port()
    env = {
        "BOXAL_DATA_DIR": str(tmp_path / "data"),
        "BOXAL_IMAGE_ROOTS": str(scenes.root),
        "BOXAL_SHARD_IMAGES": "5",
        "BOXAL_DATABASE_URL": "",
        "BOXAL_BROKER_URL": "",
    }
    env = {k: v for k, v in env.items() if v}
    process = start(boxal("serve", "--port", str(port)), env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
            yield client
    finally:
        stop(process)
        print((tmp_path / "serve.log").read_text()[-3000:])


def test_rounds_train_fill_the_pool_serve_ranked_queries_and_retrain_with_dampened_targets(
    embedded, scenes, tmp_path: Path
):
    client = embedded
    pid, truth = digit_project(client, scenes, pool=20, initial=4, test=6, round_size=6)
    started = client.post(f"/v1/projects/{pid}/rounds")
    assert started.status_code == 202
    waited = subprocess.run(
        boxal("wait", started.json()["job_id"], "--url", str(client.base_url), "--token", TOKEN),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert waited.returncode == 0, waited.stdout + waited.stderr  # `boxal wait` follows the job to its end
    job = wait_job(client, started.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["progress"]["images"] == 4 and job["progress"]["noisy_boxes"] == 0
    assert job["progress"]["shards_total"] == 4  # 20 pool images, 5 per scoring task

    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert [(r["round"], r["state"]) for r in rounds] == [(0, "closed"), (1, "open")]
    first_model = rounds[1]["model_version"]
    assert rounds[1]["pool"]["unlabeled_boxes"] > 6 and rounds[1]["metrics"]["map50"] is not None
    # the first model predicted the 16 unlabeled pool images, never the 4 labeled ones
    exported = client.get(f"/v1/projects/{pid}/export", params={"predictions": "true"}).json()
    predicted_on = {p["image_id"] for p in exported["predictions"]}
    labeled_images = {im["id"] for im in exported["images"] if im["boxal_fully_labeled"]}
    assert predicted_on and not predicted_on & labeled_images

    queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 6, "annotator": "oracle"}).json()[
        "queries"
    ]
    scores = [q["informativeness"] for q in queries]
    assert len(queries) == 6 and scores == sorted(scores, reverse=True) and queries[0]["round"] == 1
    before = {q["box_id"]: q["informativeness"] for q in queries}
    answers = [annotator_answer(q, truth, adjust=i < 3) for i, q in enumerate(queries)]
    answered = client.post(f"/v1/projects/{pid}/labels", json={"labels": answers}).json()
    assert answered["round_started"] and answered["round"] == 2  # round_size answers close the round

    job2 = wait_job(client, client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]["job_id"])
    assert job2["state"] == "succeeded", job2
    # the answered images joined training; their unanswered predictions were dampened targets
    assert job2["progress"]["noisy_boxes"] > 0 and job2["progress"]["images"] > 4
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert rounds[2]["state"] == "open" and rounds[2]["model_version"] != first_model
    assert rounds[2]["boxes_obtained"] > rounds[1]["boxes_obtained"]
    again = client.post(f"/v1/projects/{pid}/queries", json={"k": 50, "annotator": "x"}).json()["queries"]
    assert not {q["box_id"] for q in again} & set(before)  # answered boxes are never served again
    # the ranking changed: the same unlabeled boxes carry the new model's scores
    pool = {
        p["id"]: p
        for p in client.get(f"/v1/projects/{pid}/export", params={"predictions": "true"}).json()[
            "predictions"
        ]
    }
    assert {p["model_version"] for p in pool.values()} == {first_model}  # fixed pool: predicted once
    ranked_by_round1 = {p["id"]: p["informativeness"] for p in exported["predictions"]}
    assert pool.keys() <= ranked_by_round1.keys()
    changed = [b for b, p in pool.items() if p["informativeness"] != ranked_by_round1[b]]
    assert len(changed) > len(pool) / 2  # ranked by round 2's model now
    curve = client.get(f"/v1/projects/{pid}/curve").json()["points"]
    assert [p["round"] for p in curve] == [1, 2]
    assert curve[1]["boxes_obtained"] > curve[0]["boxes_obtained"] and curve[1]["queries_answered"] == 6
    assert all(0 <= p["map50"] <= 1 for p in curve) and curve[1]["seconds"] > 0
    # the embedded broker keeps all its files in the data dir (kombu's own default is ./control)
    assert list((tmp_path / "data").rglob("*.exchange")) and not (ROOT / "control").exists()


def test_a_failing_task_marks_the_job_failed_and_the_round_retryable(embedded, scenes):
    client = embedded
    pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, name="moved")
    moved = scenes.images / "train_00001.png"  # an image of the initial labeled set disappears from disk
    aside = moved.with_suffix(".aside")
    moved.rename(aside)
    try:
        started = client.post(f"/v1/projects/{pid}/rounds").json()
        job = wait_job(client, started["job_id"])
    finally:
        aside.rename(moved)
    assert job["state"] == "failed" and "train_00001.png" in job["error"], job
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    assert rounds[-1]["state"] == "failed" and rounds[-1]["error"].startswith("training:")
    assert client.get(f"/v1/projects/{pid}/curve").json()["points"] == []
    retry = client.post(f"/v1/projects/{pid}/rounds")
    assert retry.status_code == 202 and retry.json()["round"] == 1
    assert wait_job(client, retry.json()["job_id"])["state"] == "succeeded"
    assert len(client.get(f"/v1/projects/{pid}/curve").json()["points"]) == 1


def _has_detectron2() -> bool:
    from worker.engine.d2 import available

    return available()


@pytest.mark.skipif(
    not _has_detectron2(), reason="Detectron2 is not installed (README: the detectron2 backend)"
)
def test_the_detectron2_backend_trains_scores_serves_queries_and_retrains(embedded, scenes):
    """A project on backend detectron2 (the model zoo's R-50 FPN Faster R-CNN config, from scratch, at the
    digit scenes' 96 px): round 1 trains and predicts the pool, its boxes are served, answers close the
    round, and round 2 trains on them with dampened noisy targets, all through the worker process."""
    client = embedded
    pid, truth = digit_project(
        client, scenes, pool=10, initial=3, test=3, round_size=4, name="d2", backend="detectron2"
    )
    settings = client.get(f"/v1/projects/{pid}").json()["settings"]
    assert settings["backend"] == "detectron2" and settings["detectron2_config"] is None
    job = wait_job(client, client.post(f"/v1/projects/{pid}/rounds").json()["job_id"])
    assert job["state"] == "succeeded", job
    rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
    first_model = rounds[1]["model_version"]
    assert rounds[1]["pool"]["unlabeled_boxes"] >= 4 and rounds[1]["metrics"]["map50"] is not None
    queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 4, "annotator": "oracle"}).json()[
        "queries"
    ]
    assert len(queries) == 4 and all(q["unit"] == "box" and q["round"] == 1 for q in queries)
    answers = [annotator_answer(q, truth, adjust=i < 2) for i, q in enumerate(queries)]
    assert client.post(f"/v1/projects/{pid}/labels", json={"labels": answers}).json()["round_started"]
    job2 = wait_job(client, client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]["job_id"])
    assert job2["state"] == "succeeded", job2
    assert job2["progress"]["noisy_boxes"] > 0 and job2["progress"]["images"] > 3
    curve = client.get(f"/v1/projects/{pid}/curve").json()["points"]
    assert [p["round"] for p in curve] == [1, 2] and curve[1]["model_version"] != first_model


def test_unit_auto_serves_reviews_until_measured_then_records_its_choice_on_each_round(embedded, scenes):
    """A unit-auto project through the REST API: round 1 has nothing measured, so it serves reviews and
    says so; the reviews answered measure the first model, and round 2 records the unit it chose and the
    figures it chose on, which /curve shows too, and serves that unit."""
    from oracle.answers import GroundTruth, Oracle

    client = embedded
    pid, truth = digit_project(
        client, scenes, pool=20, initial=4, test=6, name="auto", unit="auto", round_size=6
    )
    oracle = Oracle({k: [GroundTruth(list(b), label) for b, label in v] for k, v in truth.items()})
    job = wait_job(client, client.post(f"/v1/projects/{pid}/rounds").json()["job_id"])
    assert job["state"] == "succeeded", job
    first = client.get(f"/v1/projects/{pid}/rounds").json()["items"][1]
    assert first["unit"] == "review"
    assert first["unit_choice"]["reason"].startswith("review: 0 completed images measured, fewer than 5")
    answered = 0
    while answered < 6:
        queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "ana"}).json()[
            "queries"
        ]
        assert [q["unit"] for q in queries] == ["review"]
        result = client.post(
            f"/v1/projects/{pid}/labels", json={"labels": [oracle.answer(queries[0])]}
        ).json()
        answered += 1
    assert result["round_started"]
    second_job = client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]["job_id"]
    assert wait_job(client, second_job)["state"] == "succeeded"
    second = client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]
    choice = second["unit_choice"]
    assert second["unit"] == choice["unit"] in ("box", "image", "review")
    assert choice["images"] == 6 and choice["objects"] > 0 and 0 <= choice["recall"] <= 1
    assert set(choice["seconds_per_box"]) == {"box", "image", "review"}
    assert choice["reason"].startswith(f"{second['unit']}: ")
    point = client.get(f"/v1/projects/{pid}/curve").json()["points"][-1]
    assert (point["round"], point["unit"], point["unit_reason"]) == (2, second["unit"], choice["reason"])
    served = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "ana"}).json()["queries"]
    assert served and served[0]["unit"] in ({"box", "image"} if second["unit"] == "box" else {second["unit"]})
