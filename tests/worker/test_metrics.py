"""Metrics from every process: `boxal serve` with two API processes and its worker; one scrape of either
API process shows the API's counters summed over both and the worker's stage durations, training loss and
shards (prometheus_client's multiprocess mode); the queue and shard backlog are read when scraped."""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from app.enqueue import Enqueuer
from app.settings import Settings
from oracle.digits import generate
from tests.worker.loop import HEADERS, boxal, digit_project, free_port, start, stop, wait_http, wait_job

REDIS_URL = os.environ.get("BOXAL_TEST_REDIS_URL")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as fresh:  # a new connection each time
        response = fresh.get("/metrics")
    assert response.status_code == 200, response.text
    return samples(response.text)


@pytest.mark.slow
def test_one_scrape_shows_every_api_process_and_the_worker(tmp_path: Path) -> None:
    scenes = generate(tmp_path / "scenes", train_images=8, test_images=2, size=96, seed=3)
    port = free_port()
    env = {
        "BOXAL_DATA_DIR": str(tmp_path / "data"),
        "BOXAL_IMAGE_ROOTS": str(scenes.root),
        "BOXAL_SHARD_IMAGES": "2",
        "BOXAL_API_WORKERS": "2",
    }
    process = start(boxal("serve", "--port", str(port)), env, tmp_path / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
            pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, epochs=1)
            job = wait_job(client, client.post(f"/v1/projects/{pid}/rounds").json()["job_id"])
            assert job["state"] == "succeeded", job
            shards = job["progress"]["shards_total"]
        leased = 0
        for _ in range(8):  # a fresh connection each: the two API processes take turns as the kernel deals
            with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as fresh:
                queries = fresh.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "m"}).json()
                for q in queries["queries"]:
                    assert fresh.delete(f"/v1/projects/{pid}/queries/{q['query_id']}").status_code == 204
                leased += len(queries["queries"])
        assert leased == 8
        for _ in range(4):  # whichever API process answers, it reports all of them
            seen = scrape(url)
            assert seen[("boxal_queries_leased_total", ())] == leased
            assert seen[("boxal_stage_seconds_count", (("stage", "training"),))] == 1
            assert seen[("boxal_stage_seconds_count", (("stage", "scoring"),))] == shards
            assert seen[("boxal_shards_scored_total", ())] == shards
            assert seen[("boxal_training_epochs_total", ())] >= 1
            loss = seen[("boxal_training_loss", (("project", str(pid)),))]
            assert math.isfinite(loss) and loss > 0
            assert seen[("boxal_queue_depth", ())] == 0  # the round is done: nothing waits
            assert seen[("boxal_shards", (("state", "pending"),))] == 0
        assert list((tmp_path / "data" / "metrics").glob("*.db"))  # the processes' shared directory
    finally:
        stop(process)


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_queue_depth_counts_waiting_tasks(tmp_path: Path, broker: str) -> None:
    if broker == "redis" and not REDIS_URL:
        pytest.skip("BOXAL_TEST_REDIS_URL is not set")
    url = None if broker == "embedded" else REDIS_URL
    queue = f"boxal-test-{uuid.uuid4().hex[:8]}"  # its own queue: no worker of another test takes these
    enqueuer = Enqueuer(Settings(data_dir=tmp_path, broker_url=url, _env_file=None), queue=queue)
    try:
        assert enqueuer.depth() == 0  # nothing sent yet (Redis keeps no empty list at all)
        enqueuer.send("boxal.test.nothing", [])
        enqueuer.send("boxal.test.nothing", [])
        assert enqueuer.depth() == 2
    finally:
        if url:
            redis.Redis.from_url(url).delete(queue)
    unreachable = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0", _env_file=None)
    assert Enqueuer(unreachable).depth() is None  # no sample rather than a wrong one
