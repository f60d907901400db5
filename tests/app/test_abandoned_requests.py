"""Clients that give up mid-request, against a real `boxal serve` (API and embedded worker) on SQLite and
on PostgreSQL: the server stays writable and healthy, loses nothing it acknowledged, keeps its database
connections in check, and stops on SIGTERM within its grace period with requests still in flight."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from app.db import Database
from app.models import LabelEvent, Project, Query
from bench.abuse import abuse, http_request
from bench.pool import fill_pool
from tests.conftest import BACKENDS
from tests.worker.loop import HEADERS, TOKEN, boxal, free_port, start, wait_http

pytestmark = pytest.mark.slow
GRACE_S = 4
WRITE_WAIT_S = 3
STOP_SLACK_S = 4.0  # process start-up of the interpreter's exit, the worker's kill, the log flush
APP_NAME = "boxal-abuse-test"


@dataclass
class Server:
    process: object
    url: str
    port: int
    log: Path
    database: Database
    pid: int = 0  # the project under abuse
    leased: list[int] = field(default_factory=list)  # acknowledged leases the abusers answer


@dataclass
class Acknowledged:
    """What the well-behaved client was told had happened (2xx answers), and any 5xx it saw."""

    answers: set[int] = field(default_factory=set)
    projects: set[str] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)


def _well_behaved(server: Server, stop: threading.Event, seen: Acknowledged) -> None:
    """An annotator and an admin who wait for their answers, working while the others give up."""
    with httpx.Client(base_url=server.url, headers=HEADERS, timeout=60) as client:
        i = 0
        while not stop.is_set():
            i += 1
            try:
                lease = client.post(
                    f"/v1/projects/{server.pid}/queries", json={"k": 3, "annotator": "steady"}
                )
                queries = lease.json().get("queries", []) if lease.status_code == 200 else []
                if queries:
                    answer = client.post(
                        f"/v1/projects/{server.pid}/labels",
                        json={
                            "labels": [{"query_id": q["query_id"], "action": "background"} for q in queries]
                        },
                    )
                    if answer.status_code == 200:
                        seen.answers.update(q["query_id"] for q in queries)
                    lease = answer
                created = client.post("/v1/projects", json={"name": f"steady-{i}", "classes": ["a"]})
                if created.status_code == 201:
                    seen.projects.add(f"steady-{i}")
                for response in (lease, created):
                    if response.status_code >= 500:
                        seen.server_errors.append(f"{response.status_code} {response.text[:200]}")
            except httpx.TransportError:
                if stop.is_set():
                    return  # the server is stopping
                raise


def _answers_promptly(url: str) -> None:
    """The first write and /health after the abuse answer, and before a leaked write lock would let them.

    A leaked write lock would make the write wait out BOXAL_DB_WRITE_WAIT_S (WRITE_WAIT_S here) and
    answer 503, so the bound is that wait. What the first request does wait for is the server working
    through the burst it was just sent: 0.22-0.38 s on a quiet 2-core machine, 1.08-1.12 s in a CI run
    on one about half as fast (docs/PERFORMANCE.md), so a fixed one-second bound measured the machine,
    not the server; that speed figure is recorded there, not asserted here.
    """
    with httpx.Client(base_url=url, headers=HEADERS, timeout=20) as client:
        for method, path, body, status in (
            ("POST", "/v1/projects", {"name": f"after-{time.time()}", "classes": ["a"]}, 201),
            ("GET", "/health", None, 200),
        ):
            started = time.perf_counter()
            response = client.request(method, path, json=body)
            elapsed = time.perf_counter() - started
            assert response.status_code == status, response.text
            assert elapsed < WRITE_WAIT_S, f"{method} {path} took {elapsed:.2f} s after the abuse"


def _pg_connections(database: Database) -> dict[str, int]:
    with database.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT coalesce(state, '?'), count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = :app GROUP BY 1"
            ),
            {"app": APP_NAME},
        ).all()
    return {state: count for state, count in rows}


def _settled_pg_connections(database: Database, wait_s: float = 5.0) -> dict[str, int]:
    """The server's connections once no request is running: a session left in a transaction by an
    abandoned request would still be there after ``wait_s``; a live request's ends in milliseconds."""
    deadline = time.monotonic() + wait_s
    while True:
        states = _pg_connections(database)
        if ("idle in transaction" not in states and "active" not in states) or time.monotonic() > deadline:
            return states
        time.sleep(0.1)


def _assert_nothing_lost(database: Database, seen: Acknowledged, pid: int) -> None:
    with database.transaction(write=False) as session:
        answered = set(
            session.scalars(select(Query.id).where(Query.project_id == pid, Query.state == "answered"))
        )
        logged = set(session.scalars(select(LabelEvent.query_id).where(LabelEvent.project_id == pid)))
        names = set(session.scalars(select(Project.name)))
        doubles = session.execute(
            select(Query.box_id, func.count())
            .where(Query.project_id == pid, Query.state != "released")
            .group_by(Query.box_id)
            .having(func.count() > 1)
        ).all()
    assert seen.answers and seen.projects, "the well-behaved client got nothing done"
    assert seen.answers <= answered and seen.answers <= logged, "acknowledged answers were lost"
    assert seen.projects <= names, "acknowledged projects were lost"
    assert doubles == [], f"boxes leased twice: {doubles[:5]}"


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    env = {
        "BOXAL_DATA_DIR": str(tmp_path / "data"),
        "BOXAL_SHUTDOWN_GRACE_S": str(GRACE_S),
        "BOXAL_DB_WRITE_WAIT_S": str(WRITE_WAIT_S),  # a leaked write lock would answer 503 after this
    }
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        env["BOXAL_DATABASE_URL"] = f"{url}?application_name={APP_NAME}"
        database = Database(url)
    else:  # the embedded default: SQLite in the data dir
        database = Database(f"sqlite:///{tmp_path / 'data' / 'boxal.db'}")
    port = free_port()
    log = tmp_path / "server.log"
    process = start(boxal("serve", "--port", str(port)), env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
            created = client.post(
                "/v1/projects",
                json={"name": "abused", "classes": ["a", "b"], "settings": {"round_size": 1_000_000}},
            )
            pid = created.json()["id"]
            fill_pool(database, pid, 4_000)
            leased = client.post(f"/v1/projects/{pid}/queries", json={"k": 100, "annotator": "ghost"})
        yield Server(
            process, url, port, log, database, pid, [q["query_id"] for q in leased.json()["queries"]]
        )
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        worker = re.search(r"worker started \(pid (\d+)\)", log.read_text(errors="replace"))
        if worker:
            _kill_group(int(worker.group(1)))
        database.dispose()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_clients_that_give_up_leave_the_server_writable_and_stoppable(server: Server) -> None:
    seen = Acknowledged()
    stop = threading.Event()
    steady = threading.Thread(target=_well_behaved, args=(server, stop, seen))
    steady.start()
    postgres = server.database.dialect == "postgresql"
    try:
        for seed in (1, 2):
            abuse(server.port, TOKEN, server.pid, server.leased, 400, seed=seed)
            _answers_promptly(server.url)
    finally:
        stop.set()
        steady.join(timeout=60)
    assert seen.server_errors == []
    if postgres:  # sessions went back to the pool: none left mid-transaction, at most the pool's size
        settled = _settled_pg_connections(server.database)
        assert "idle in transaction" not in settled, settled
        assert sum(settled.values()) <= 20, settled  # make_engine's pool_size; overflow ones were closed
    # SIGTERM with requests in flight: two uploads whose bodies never end, and a working client
    in_flight = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
    for sock in in_flight:
        sock.sendall(
            http_request(TOKEN, "POST", f"/v1/projects/{server.pid}/images", b'{"ima', declared=4000)
        )
    stop.clear()
    steady = threading.Thread(target=_well_behaved, args=(server, stop, seen))
    steady.start()
    time.sleep(0.5)
    worker_pid = int(re.search(r"worker started \(pid (\d+)\)", server.log.read_text()).group(1))
    started = time.monotonic()
    stop.set()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=GRACE_S + 30)
    while _alive(worker_pid) and time.monotonic() - started < GRACE_S + 30:
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    steady.join(timeout=30)
    for sock in in_flight:
        sock.close()
    log = server.log.read_text(errors="replace")
    assert server.process.returncode == 0, log[-3000:]
    assert not _alive(worker_pid), "the embedded worker outlived the server"
    assert elapsed <= GRACE_S + STOP_SLACK_S, f"SIGTERM took {elapsed:.1f} s (grace {GRACE_S} s)"
    assert "SIGTERM received: stopping" in log
    _assert_nothing_lost(server.database, seen, server.pid)
