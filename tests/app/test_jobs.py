"""Taking jobs back for another worker (app/jobs/service.py): silent ones, and those whose holding process is
known to be gone (a worker `boxal serve` restarted takes its round on at once, not after job_stale_s); never
one whose message still waits, and never by touching the heartbeat watchers judge progress by."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from app.jobs import service as jobs
from app.models import Job, utcnow
from tests.factories import coco_for, create_project, import_coco, register_images
from worker.context import holder_gone, process_started


def _round_job(client, tmp_path: Path, name: str) -> str:
    project = create_project(client, name=name)
    images = register_images(client, project["id"], tmp_path / name, 2, prefix=name)
    truth = {f"{name}00000": [([1, 1, 9, 9], "cat")]}
    import_coco(client, project["id"], coco_for(images[:1], truth, ["cat"]))
    started = client.post(f"/v1/projects/{project['id']}/rounds")
    assert started.status_code == 202, started.text
    return str(started.json()["job_id"])


def test_a_job_whose_holder_process_is_gone_is_taken_back_at_once(client, database, tmp_path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: no process runs under its pid now
    host = socket.gethostname()
    holders = {
        "dead": f"{host}:{gone.pid}:abc123",  # this machine, no such process any more
        "alive": f"{host}:{os.getpid()}.{process_started(os.getpid())}:abc123",  # this very process
        "reused": f"{host}:{os.getpid()}.1:abc123",  # an earlier process under this pid (a new container's)
        "elsewhere": f"another-{host}:{gone.pid}:abc123",  # cannot be checked from here
    }
    ids = {name: _round_job(client, tmp_path, name) for name in holders}
    with database.transaction() as session:
        for name, token in holders.items():
            job = session.get(Job, ids[name])
            job.state, job.worker = "running", token
            jobs.job_progress(session, ids[name], stage="training")  # a fresh heartbeat
    with database.transaction() as session:
        taken = jobs.take_back_stale(session, timedelta(hours=1), holder_gone=holder_gone)
    assert sorted(taken) == sorted([ids["dead"], ids["reused"]])
    with database.transaction(write=False) as session:
        job = session.get(Job, ids["dead"])
        assert job.worker is None and job.losses == 1 and job.sent_at is not None
        assert "recovered_at" not in job.progress and job.heartbeat_at < job.sent_at  # the heartbeat stays
        assert session.get(Job, ids["alive"]).worker == holders["alive"]
    with database.transaction() as session:  # without holder_gone only silence counts
        assert jobs.take_back_stale(session, timedelta(hours=1)) == []


def test_a_silent_job_is_sent_again_once_per_period_and_never_while_its_message_waits(
    client, database, tmp_path
) -> None:
    job_id = _round_job(client, tmp_path, "queued")  # queued: its message was sent when the round started
    stale = timedelta(seconds=120)
    later = utcnow() + timedelta(seconds=300)
    with database.transaction() as session:  # silent for 300 s, but its message waits behind another round
        assert jobs.take_back_stale(session, stale, now=later, waiting={job_id, "other"}) == []
    with database.transaction() as session:  # the message is gone (lost): sent again, once
        assert jobs.take_back_stale(session, stale, now=later, waiting=set()) == [job_id]
    for seconds in (30, 60, 119):  # the reaper's next looks within the period: nothing piles up
        with database.transaction() as session:
            now = later + timedelta(seconds=seconds)
            assert jobs.take_back_stale(session, stale, now=now, waiting=set()) == []
    with database.transaction() as session:  # no broker to read (AMQP): the period alone decides
        assert jobs.take_back_stale(session, stale, now=later + timedelta(seconds=121)) == [job_id]
    with database.transaction(write=False) as session:
        job = session.get(Job, job_id)
        assert job.state == "queued" and job.losses == 0 and job.heartbeat_at is None


def test_a_job_whose_worker_dies_again_and_again_fails_saying_why(client, database, tmp_path) -> None:
    job_id = _round_job(client, tmp_path, "oom")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for death in range(1, jobs.MAX_LOSSES + 1):
        with database.transaction() as session:
            session.get(Job, job_id).state = "running"
            jobs.job_started(session, job_id, f"{socket.gethostname()}:{gone.pid}:abc{death}")
        with database.transaction() as session:
            taken = jobs.take_back_stale(session, timedelta(hours=1), holder_gone=holder_gone)
        assert taken == ([job_id] if death < jobs.MAX_LOSSES else [])
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["state"] == "failed" and job["losses"] == jobs.MAX_LOSSES
    assert f"died {jobs.MAX_LOSSES} times (killed, or out of memory" in job["error"]
