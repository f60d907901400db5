"""The embedded default survives what broke it: unreadable files in its queue folder, and its worker killed
mid-round (`boxal serve` restarts it, /health says so meanwhile, and the round completes); and `boxal
simulate` gives up with a reason, instead of waiting forever, when its server's worker is gone for good."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from oracle.digits import generate
from tests.worker.loop import (
    HEADERS,
    ROOT,
    boxal,
    digit_project,
    free_port,
    start,
    stop,
    wait_for,
    wait_http,
    wait_job,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("scenes"), train_images=12, test_images=3, size=96, seed=3)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, scenes):
    """`boxal serve` on the embedded default (SQLite, the filesystem broker, its own worker)."""
    folder = tmp_path_factory.mktemp("served")
    data = folder / "data"
    port = free_port()
    env = {"BOXAL_DATA_DIR": str(data), "BOXAL_IMAGE_ROOTS": str(scenes.root), "BOXAL_SHARD_IMAGES": "4"}
    environment = {k: v for k, v in os.environ.items() if k not in ("BOXAL_DATABASE_URL", "BOXAL_BROKER_URL")}
    process = start(boxal("serve", "--port", str(port)), {**environment, **env}, folder / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
            yield client, data, folder / "serve.log"
    finally:
        stop(process)
        print((folder / "serve.log").read_text()[-4000:])


def _worker_pid(data: Path) -> int | None:
    state = json.loads((data / "broker" / "worker.json").read_text())
    return state["pid"] if state["state"] == "running" else None


def _healthy(client: httpx.Client) -> bool:
    return client.get("/health").json()["worker"] == "ok"


def test_unreadable_queue_files_are_set_aside_and_the_round_completes(served, scenes) -> None:
    client, data, _ = served
    wait_for(lambda: _healthy(client), 60, "the worker to consume")
    worker = _worker_pid(data)
    queue = data / "broker" / "queue"
    # what a torn write leaves: an empty message and half of one, both older than anything sent next
    (queue / "1_00000000-0000-0000-0000-000000000000.boxal.msg").write_bytes(b"")
    (queue / "2_00000000-0000-0000-0000-000000000001.boxal.msg").write_bytes(b'{"body": "eyJ0YX')
    pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, name="torn")
    started = client.post(f"/v1/projects/{pid}/rounds")
    assert started.status_code == 202
    job = wait_job(client, started.json()["job_id"], timeout=300)
    assert job["state"] == "succeeded", job
    bad = [
        "1_00000000-0000-0000-0000-000000000000.boxal.msg",
        "2_00000000-0000-0000-0000-000000000001.boxal.msg",
    ]

    def set_aside() -> bool:
        return sorted(p.name for p in (data / "broker" / "rejected").iterdir()) == bad

    wait_for(set_aside, 10, "both files in broker/rejected")  # the consumer takes the oldest name first
    assert not [p for p in queue.iterdir() if p.name.endswith(".msg")]
    now = _worker_pid(data)
    assert now is not None and (now == worker or _healthy(client))  # the same worker, or a restarted one
    metrics = client.get("/metrics").text
    assert "boxal_broker_messages_set_aside_total 2.0" in metrics


def test_a_worker_killed_mid_round_is_reported_restarted_and_the_round_completes(served, scenes) -> None:
    client, data, log = served
    wait_for(lambda: _healthy(client), 60, "the worker to consume")
    pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, name="killed", epochs=40)
    job_id = client.post(f"/v1/projects/{pid}/rounds").json()["job_id"]

    def training() -> bool:
        job = client.get(f"/v1/jobs/{job_id}").json()
        return job["state"] == "running" and job["progress"].get("stage") == "training"

    wait_for(training, 120, "the round to be training")
    victim = _worker_pid(data)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    seen = wait_for(
        lambda: (w := client.get("/health").json())["worker"] != "ok" and w, 5, "/health to report it"
    )
    assert seen["queue"] == "unavailable" and seen["status"] == "ok"  # the API itself still serves
    assert time.monotonic() - killed_at < 5
    wait_for(lambda: _healthy(client), 90, "a restarted worker to consume")
    assert _worker_pid(data) not in (None, victim)
    job = wait_job(client, job_id, timeout=300)
    assert job["state"] == "succeeded", job
    assert job["attempts"] >= 2  # taken on again by the new worker: its holder was gone
    assert client.get(f"/v1/projects/{pid}/rounds").json()["items"][-1]["state"] == "open"
    assert "restarting it in" in log.read_text()


def test_simulate_gives_up_with_a_reason_when_its_worker_is_gone(tmp_path: Path) -> None:
    """With restarts switched off (BOXAL_WORKER_RESTARTS=0), a worker killed mid-round is gone for good:
    `boxal simulate` exits non-zero within seconds, naming the server's log."""
    out = tmp_path / "run"
    env = {**os.environ, "BOXAL_WORKER_RESTARTS": "0"}
    simulate = subprocess.Popen(
        boxal("simulate", "--preset", "smoke", "--out", str(out)),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        state = out / "server" / "broker" / "worker.json"

        def worker() -> int | None:
            try:
                return _worker_pid(out / "server") if (out / "server" / "boxal.db").exists() else None
            except (FileNotFoundError, ValueError):
                return None

        victim = wait_for(worker, 180, "the embedded worker to start")
        assert state.exists()
        time.sleep(3)  # let the first round get under way
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        stdout, stderr = simulate.communicate(timeout=120)
        took = time.monotonic() - killed_at
    finally:
        if simulate.poll() is None:
            os.killpg(simulate.pid, signal.SIGKILL)
            simulate.wait(timeout=30)
    assert simulate.returncode == 1, (stdout[-2000:], stderr[-2000:])
    assert "worker exited and was not restarted" in stderr and str(out / "server.log") in stderr, stderr
    assert took < 30
