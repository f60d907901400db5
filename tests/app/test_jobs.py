"""Taking jobs back for another worker (app/jobs/service.py): silent ones, and those whose holding process is
known to be gone (a worker `boxal serve` restarted takes its round on at once, not after job_stale_s)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from app.jobs import service as jobs
from app.models import Job
from tests.factories import coco_for, create_project, import_coco, register_images
from worker.context import holder_gone


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
        "alive": f"{host}:{os.getpid()}:abc123",  # this very process
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
    assert taken == [ids["dead"]]
    with database.transaction(write=False) as session:
        job = session.get(Job, ids["dead"])
        assert job.worker is None and "recovered_at" in job.progress
        assert session.get(Job, ids["alive"]).worker == holders["alive"]
    with database.transaction() as session:  # without holder_gone only silence counts
        assert jobs.take_back_stale(session, timedelta(hours=1)) == []
