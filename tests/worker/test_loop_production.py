"""The loop with a Redis broker, PostgreSQL and separate `boxal worker` processes, and its faults."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select

from app.db import Database
from app.models import Box, LabelEvent, Round, Shard
from oracle.digits import generate
from tests.worker.loop import (
    HEADERS,
    annotator_answer,
    boxal,
    digit_project,
    free_port,
    post_labels,
    start,
    stop,
    wait_http,
    wait_job,
)

REDIS_URL = os.environ.get("BOXAL_TEST_REDIS_URL")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.postgres,
    pytest.mark.skipif(not REDIS_URL, reason="BOXAL_TEST_REDIS_URL is not set"),
]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("scenes"), train_images=20, test_images=6, size=96, seed=2)


class Stack:
    def __init__(self, tmp_path: Path, scenes, database_url: str) -> None:
        self.tmp = tmp_path
        self.env = {
            "BOXAL_DATA_DIR": str(tmp_path / "data"),
            "BOXAL_IMAGE_ROOTS": str(scenes.root),
            "BOXAL_DATABASE_URL": database_url,
            "BOXAL_BROKER_URL": REDIS_URL or "",
            "BOXAL_SHARD_IMAGES": "2",
            "BOXAL_JOB_STALE_S": "6",
        }
        self.database_url = database_url
        self.workers: list = []
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.api = start(boxal("serve", "--port", str(port), "--no-worker"), self.env, tmp_path / "api.log")

    def worker(self, name: str):  # type: ignore[no-untyped-def]
        process = start(boxal("worker", "--name", f"{name}@%h"), self.env, self.tmp / f"{name}.log")
        self.workers.append(process)
        return process

    def wait_workers(self, count: int) -> None:
        from app.enqueue import make_celery
        from app.settings import Settings

        celery = make_celery(Settings(broker_url=REDIS_URL, _env_file=None))  # type: ignore[call-arg]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len(celery.control.ping(timeout=1.0) or []) >= count:
                return
        raise TimeoutError("workers did not come up")

    def close(self) -> None:
        for process in [*self.workers, self.api]:
            stop(process)
        for log in sorted(self.tmp.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text()[-2000:]}")


@pytest.fixture
def stack(tmp_path: Path, scenes, postgres_url: str):
    redis.Redis.from_url(REDIS_URL).flushdb()
    stack = Stack(tmp_path, scenes, postgres_url)
    try:
        wait_http(stack.url)
        yield stack
    finally:
        stack.close()


def test_two_workers_share_a_round_end_to_end(stack, scenes) -> None:
    stack.worker("w1")
    stack.worker("w2")
    stack.wait_workers(2)
    with httpx.Client(base_url=stack.url, timeout=60, headers=HEADERS) as client:
        pid, truth = digit_project(client, scenes, pool=20, initial=4, test=6, round_size=6)
        job = wait_job(client, client.post(f"/v1/projects/{pid}/rounds").json()["job_id"])
        assert job["state"] == "succeeded", job
        queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 6, "annotator": "a"}).json()[
            "queries"
        ]
        scores = [q["informativeness"] for q in queries]
        assert len(queries) == 6 and scores == sorted(scores, reverse=True)
        answers = [annotator_answer(q, truth, adjust=i < 3) for i, q in enumerate(queries)]
        assert client.post(f"/v1/projects/{pid}/labels", json={"labels": answers}).json()["round_started"]
        second = client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]
        job2 = wait_job(client, second["job_id"])
        assert job2["state"] == "succeeded" and job2["progress"]["noisy_boxes"] > 0, job2
        curve = client.get(f"/v1/projects/{pid}/curve").json()["points"]
        assert [p["round"] for p in curve] == [1, 2] and all(p["map50"] is not None for p in curve)
    db = Database(stack.database_url)
    with db.transaction(write=False) as session:
        workers = set(session.scalars(select(Shard.worker).where(Shard.stage == "score")))
    db.dispose()
    assert len({w.split(":")[0] + w.split(":")[1] for w in workers}) >= 2  # both worker processes scored


def test_a_worker_killed_mid_training_is_recovered_without_duplicates(stack, scenes) -> None:
    first = stack.worker("w1")
    stack.wait_workers(1)
    with httpx.Client(base_url=stack.url, timeout=60, headers=HEADERS) as client:
        pid, truth = digit_project(client, scenes, pool=20, initial=8, test=4, round_size=4)
        assert (
            wait_job(client, client.post(f"/v1/projects/{pid}/rounds").json()["job_id"])["state"]
            == "succeeded"
        )
        queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 4, "annotator": "a"}).json()[
            "queries"
        ]
        client.patch(f"/v1/projects/{pid}", json={"settings": {"epochs": 10}}).raise_for_status()
        answers = [annotator_answer(q, truth, adjust=i < 2) for i, q in enumerate(queries)]
        post_labels(client, pid, answers)
        job_id = client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]["job_id"]
        deadline = time.monotonic() + 120
        while (client.get(f"/v1/jobs/{job_id}").json()["progress"].get("epoch") or 0) < 3:
            assert time.monotonic() < deadline, "training did not get to epoch 3"
            time.sleep(0.2)
        stop(first, signal.SIGKILL)  # the worker dies mid-training, its task unacknowledged

        # meanwhile the pool keeps being served from round 1's ranking
        served = client.post(f"/v1/projects/{pid}/queries", json={"k": 3, "annotator": "b"}).json()["queries"]
        assert len(served) == 3 and {q["round"] for q in served} == {1}
        for q in served:
            client.delete(f"/v1/projects/{pid}/queries/{q['query_id']}")

        stack.worker("w2")  # its reaper finds the silent job and runs it again
        job = wait_job(client, job_id, timeout=300)
        assert job["state"] == "succeeded", job
        assert job["progress"]["resumed_from_epoch"] >= 2, job["progress"]  # resumed from its checkpoint
        assert job["attempts"] >= 2
        rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
        assert [(r["round"], r["state"]) for r in rounds] == [(0, "closed"), (1, "closed"), (2, "open")]
        assert [p["round"] for p in client.get(f"/v1/projects/{pid}/curve").json()["points"]] == [1, 2]
    db = Database(stack.database_url)
    with db.transaction(write=False) as session:
        round2 = session.scalars(select(Round).where(Round.project_id == pid, Round.number == 2)).one()
        shards = session.scalars(select(Shard).where(Shard.round_id == round2.id)).all()
        assert len(shards) == shards[0].total and all(s.done for s in shards)
        events = session.scalar(
            select(func.count()).select_from(LabelEvent).where(LabelEvent.project_id == pid)
        )
        assert events == 4  # nothing was answered twice
        per_box = session.execute(
            select(Box.image_id, Box.label, Box.x1, Box.y1, Box.x2, Box.y2, func.count())
            .where(Box.project_id == pid, Box.source == "predicted", Box.status == "unlabeled")
            .group_by(Box.image_id, Box.label, Box.x1, Box.y1, Box.x2, Box.y2)
            .having(func.count() > 1)
        ).all()
        assert per_box == []  # no box was predicted twice
    db.dispose()
