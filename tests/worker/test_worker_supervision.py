"""The embedded default survives what broke it: unreadable files in its queue folder, and its worker killed
mid-round (`boxal serve` restarts it, /health says so meanwhile, and the round completes); and `boxal
simulate` gives up with a reason, instead of waiting forever, when its server's worker is gone for good."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
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


def _holder(client: httpx.Client, data: Path, job_id: str) -> int | None:
    """The pid of the process running the job's training now, from its worker token in the database
    (``host:pid[.started]:random``)."""
    job = client.get(f"/v1/jobs/{job_id}").json()
    if job["state"] != "running" or "epoch" not in job["progress"]:
        return None
    token = _token(data, job_id)
    return _pid(token) if token else None


def _token(data: Path, job_id: str) -> str | None:
    with contextlib.closing(sqlite3.connect(data / "boxal.db")) as db:
        row = db.execute("SELECT worker FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row[0] if row else None


def _pid(token: str) -> int:
    return int(token.split(":")[1].split(".")[0])


def _group(pgid: int) -> list[int]:
    """Every process of a process group (the worker's: what `boxal serve` kills when it restarts it)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return sorted(members)


# a round on these 8 scenes takes about 20 s here; a restarted worker consumes within about 15 s
BOUND_S = 240


def test_the_task_process_killed_while_idle_is_reported_and_the_next_round_completes(served, scenes) -> None:
    """The process that runs tasks is the one `boxal serve` supervises (Celery's threads pool): killed while
    idle, as the OOM killer picks it, /health says so at once and the next round completes. With Celery's
    prefork pool the killed child's replacement blocked for good and /health still said ok."""
    client, data, log = served
    wait_for(lambda: _healthy(client), 60, "the worker to consume")
    pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, name="idle-kill")
    first = client.post(f"/v1/projects/{pid}/rounds").json()["job_id"]
    assert wait_job(client, first, timeout=BOUND_S)["state"] == "succeeded"
    worker = _worker_pid(data)
    task_process = _pid(_token(data, first) or "")
    assert task_process == worker and _group(worker) == [worker]  # no pool child anywhere
    os.kill(task_process, signal.SIGKILL)
    killed_at = time.monotonic()
    seen = wait_for(lambda: (w := client.get("/health").json())["worker"] != "ok" and w, 5, "/health")
    assert seen["queue"] == "unavailable" and time.monotonic() - killed_at < 5
    second = client.post(f"/v1/projects/{pid}/rounds", json={"force": True})  # round 1 has no answers yet
    assert second.status_code == 202, second.text
    job = wait_job(client, second.json()["job_id"], timeout=BOUND_S)
    assert job["state"] == "succeeded", job
    assert time.monotonic() - killed_at < BOUND_S
    assert _healthy(client) and _worker_pid(data) not in (None, task_process)
    assert "restarting it in" in log.read_text()


def test_the_task_process_killed_three_times_while_training_and_the_round_completes(served, scenes) -> None:
    client, data, log = served
    wait_for(lambda: _healthy(client), 60, "the worker to consume")
    pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, name="killed", epochs=60)
    job_id = client.post(f"/v1/projects/{pid}/rounds").json()["job_id"]
    started = time.monotonic()
    victims: list[int] = []
    for kill in range(3):
        victim = wait_for(
            lambda: (h := _holder(client, data, job_id)) not in (None, *victims) and h, 120, f"kill {kill}"
        )
        os.kill(victim, signal.SIGKILL)
        victims.append(victim)
        seen = wait_for(
            lambda: (w := client.get("/health").json())["worker"] != "ok" and w, 5, "/health to report it"
        )
        assert seen["queue"] == "unavailable" and seen["status"] == "ok"  # the API itself still serves
    job = wait_job(client, job_id, timeout=BOUND_S + 120)
    assert job["state"] == "succeeded", job
    assert time.monotonic() - started < BOUND_S + 120
    assert job["losses"] == 3 and job["attempts"] >= 4  # taken on again each time: its holder was gone
    assert client.get(f"/v1/projects/{pid}/rounds").json()["items"][-1]["state"] == "open"
    assert log.read_text().count("restarting it in") >= 3
    queue = data / "broker" / "queue"
    assert not [p for p in queue.iterdir() if p.name.endswith(".msg")]  # no duplicate left waiting


def test_sigterm_while_training_stops_within_the_grace_and_the_round_completes_after_a_restart(
    tmp_path: Path, scenes
) -> None:
    """The documented bound (BOXAL_SHUTDOWN_GRACE_S, here 6 s) holds while the worker trains: a task does
    not stop at a warm shutdown, so it is killed in time, and the next `boxal serve` takes the round on."""
    grace = 6.0
    env = {
        "BOXAL_DATA_DIR": str(tmp_path / "data"),
        "BOXAL_IMAGE_ROOTS": str(scenes.root),
        "BOXAL_SHUTDOWN_GRACE_S": str(grace),
    }
    environment = {k: v for k, v in os.environ.items() if k not in ("BOXAL_DATABASE_URL", "BOXAL_BROKER_URL")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start(boxal("serve", "--port", str(port)), {**environment, **env}, tmp_path / "serve.log")
    try:
        wait_http(url)
        with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
            wait_for(lambda: _healthy(client), 60, "the worker to consume")
            pid, _ = digit_project(client, scenes, pool=8, initial=3, test=2, name="term", epochs=60)
            job_id = client.post(f"/v1/projects/{pid}/rounds").json()["job_id"]
            wait_for(lambda: "epoch" in client.get(f"/v1/jobs/{job_id}").json()["progress"], 120, "training")
            worker = _worker_pid(tmp_path / "data")
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
        took = time.monotonic() - sent
    finally:
        stop(process)
    assert took <= grace + 1.0, f"SIGTERM took {took:.1f} s (grace {grace:.0f} s)"
    assert worker is not None and _group(worker) == []  # nothing of the worker outlived it
    process = start(boxal("serve", "--port", str(port)), {**environment, **env}, tmp_path / "serve.log")
    try:
        wait_http(url)
        with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
            assert wait_job(client, job_id, timeout=BOUND_S)["state"] == "succeeded"
    finally:
        stop(process)


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
