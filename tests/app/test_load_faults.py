"""Load and faults, bounded in count and time, on loopback: 32 annotators for 20 s on PostgreSQL; the
database restarted under load; the broker down. (The 60-second run with its latencies is the benchmark's,
bench/load_bench.py; here the load only has to be long enough for every annotator to lease, answer and
give back many times: about 18 leases each in 20 s on a quiet 2-core machine.)"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from app.db import Database
from app.models import LabelEvent, Query
from bench.pool import fill_pool
from oracle import load
from tests.worker.loop import HEADERS, TOKEN, boxal, free_port, start, stop, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
PG_VERSION = (
    next(iter(sorted(os.listdir("/etc/postgresql"))), None) if os.path.isdir("/etc/postgresql") else None
)


def _server(tmp_path: Path, database_url: str, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = start(
        boxal("serve", "--no-worker", "--port", str(port)),
        {"BOXAL_DATA_DIR": str(tmp_path / "data"), "BOXAL_DATABASE_URL": database_url, **env},
        tmp_path / "server.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url)
    return process, url


def _project(url: str, database: Database, boxes: int) -> int:
    with httpx.Client(base_url=url, headers=HEADERS) as client:
        pid = client.post(
            "/v1/projects",
            json={
                "name": f"load-{time.time()}",
                "classes": ["a", "b"],
                "settings": {"round_size": 1_000_000},
            },
        ).json()["id"]
    fill_pool(database, pid, boxes)
    return pid


def _assert_nothing_lost(database: Database, pid: int, result: load.LoadResult) -> None:
    with database.transaction(write=False) as session:
        answered = set(
            session.scalars(select(Query.id).where(Query.project_id == pid, Query.state == "answered"))
        )
        logged = set(session.scalars(select(LabelEvent.query_id).where(LabelEvent.project_id == pid)))
        held = session.execute(  # at most one live (leased or answered) query per box
            select(Query.box_id, func.count())
            .where(Query.project_id == pid, Query.state != "released")
            .group_by(Query.box_id)
            .having(func.count() > 1)
        ).all()
    assert result.acknowledged <= answered, f"{len(result.acknowledged - answered)} acknowledged answers lost"
    assert result.acknowledged <= logged, "acknowledged answers missing from the event log"
    assert held == [], f"boxes leased to two annotators: {held[:5]}"
    assert result.double_leases == [], result.double_leases[:5]


def test_32_annotators_under_load(tmp_path: Path, postgres_url: str) -> None:
    database = Database(postgres_url)
    process, url = _server(tmp_path, postgres_url)
    try:
        pid = _project(url, database, 40_000)
        result = load.run(url, TOKEN, pid, annotators=32, seconds=20)
    finally:
        stop(process)
    lease_p50, lease_p99 = result.percentile("lease", 0.5), result.percentile("lease", 0.99)
    answer_p50, answer_p99 = result.percentile("answer", 0.5), result.percentile("answer", 0.99)
    print(
        f"\n32 annotators, {result.duration_s:.0f} s: {len(result.latencies['lease'])} leases "
        f"(p50 {lease_p50:.0f} ms, p99 {lease_p99:.0f} ms), {len(result.latencies['answer'])} answer batches "
        f"(p50 {answer_p50:.0f} ms, p99 {answer_p99:.0f} ms), {len(result.acknowledged)} answers, "
        f"{len(result.released)} given back"
    )
    assert result.errors == [] and result.server_errors() == {}
    # every annotator was served and heard back (no count that depends on the machine's speed)
    assert len(result.answered_by) == 32 and result.released
    _assert_nothing_lost(database, pid, result)
    database.dispose()


@pytest.mark.skipif(PG_VERSION is None, reason="no local PostgreSQL cluster to restart")
def test_the_database_restarts_under_load(tmp_path: Path, postgres_url: str) -> None:
    database = Database(postgres_url)
    process, url = _server(tmp_path, postgres_url)
    cluster = ["pg_ctlcluster", "--skip-systemctl-redirect", str(PG_VERSION), "main"]
    outcome: dict[str, load.LoadResult] = {}
    answering, outage_seen, recovered_load, enough = (threading.Event() for _ in range(4))
    acknowledged = [0]  # answers acknowledged so far, as the load last reported
    at_restart: list[int] = []  # ... when the database came back

    def watch(result: load.LoadResult) -> None:  # the load calls this about once a second
        acknowledged[0] = len(result.acknowledged)
        if result.acknowledged:
            answering.set()
        if result.unavailable:
            outage_seen.set()
        if at_restart and len(result.acknowledged) > at_restart[0]:
            recovered_load.set()

    try:
        pid = _project(url, database, 20_000)
        worker = threading.Thread(
            target=lambda: outcome.setdefault(
                "load", load.run(url, TOKEN, pid, annotators=16, seconds=300, on_tick=watch, stop=enough)
            )
        )
        worker.start()
        assert answering.wait(120), "the load never got an answer acknowledged"
        subprocess.run([*cluster, "stop", "-m", "fast"], check=True, capture_output=True)
        assert outage_seen.wait(120), "the load never saw the database down"
        with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
            down = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "probe"})
        subprocess.run([*cluster, "start"], check=True, capture_output=True)
        at_restart.append(acknowledged[0])
        # the load's own annotators get answers through again, with no restart of the API
        assert recovered_load.wait(120), "no answer was acknowledged after the database came back"
        enough.set()
        worker.join()
        with httpx.Client(base_url=url, headers=HEADERS, timeout=10) as client:
            recovered = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "probe"})
    finally:
        subprocess.run([*cluster, "start"], capture_output=True)  # never leave the database down
        stop(process)
    result = outcome["load"]
    body = down.json()
    assert down.status_code == 503 and body["error"] == "unavailable" and "database" in body["detail"]
    assert result.errors == [] and result.unavailable  # the outage was seen, as 503s and nothing worse
    assert all(status == 503 for codes in result.statuses.values() for status in codes if status >= 500)
    assert recovered.status_code == 200 and recovered.json()["queries"]  # it came back by itself
    database.dispose()
    database = Database(postgres_url)
    _assert_nothing_lost(database, pid, result)
    database.dispose()


def test_with_the_broker_down_leasing_and_answering_go_on(tmp_path: Path, postgres_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = Database(postgres_url)
    process, url = _server(
        tmp_path, postgres_url, BOXAL_BROKER_URL=f"redis://127.0.0.1:{port}/0", BOXAL_BROKER_TIMEOUT_S="1"
    )
    try:
        pid = _project(url, database, 200)
        with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
            client.post(
                f"/v1/projects/{pid}/imports",
                json={
                    "format": "coco",
                    "data": {
                        "images": [{"id": "load1", "file_name": "load1.png", "width": 640, "height": 480}],
                        "categories": [{"id": 1, "name": "a"}],
                        "annotations": [
                            {"id": 1, "image_id": "load1", "category_id": 1, "bbox": [1, 1, 20, 20]}
                        ],
                    },
                },
            )
            assert client.get("/health").json()["broker"] == "ok"
            broker.terminate()
            broker.wait(timeout=10)
            health = client.get("/health")
            assert health.status_code == 200 and health.json()["broker"] == "unavailable"
            queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 3, "annotator": "a"}).json()[
                "queries"
            ]
            assert len(queries) == 3
            answered = client.post(
                f"/v1/projects/{pid}/labels",
                json={"labels": [{"query_id": q["query_id"], "action": "background"} for q in queries]},
            )
            assert answered.status_code == 200
            refused = client.post(f"/v1/projects/{pid}/rounds")
            assert refused.status_code == 503 and "broker is unavailable" in refused.json()["detail"]
            rounds = client.get(f"/v1/projects/{pid}/rounds").json()["items"]
            assert rounds[-1]["state"] == "failed"  # recorded, and retryable once the broker is back
            broker = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(100):  # until the API sees the broker again
                if client.get("/health").json()["broker"] == "ok":
                    break
                time.sleep(0.1)
            assert client.post(f"/v1/projects/{pid}/rounds").status_code == 202
    finally:
        broker.terminate()
        stop(process)
        database.dispose()
