from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from tests.factories import coco_for, create_project, import_coco, register_images, seed_pool
from tests.worker.loop import wait_for


def test_export_is_coco_with_xywh_boxes(client, database, tmp_path: Path) -> None:
    project = create_project(client)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 2)
    import_coco(client, pid, coco_for(images[:1], {"img00000": [([2, 3, 12, 23], "dog")]}, ["cat", "dog"]))
    seed_pool(database, pid, [images[1]["id"]], 1)
    plain = client.get(f"/v1/projects/{pid}/export", params={"format": "coco"}).json()
    assert plain["categories"] == [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    assert [(a["bbox"], a["category_id"]) for a in plain["annotations"]] == [([2, 3, 10, 20], 2)]
    assert "predictions" not in plain
    full = client.get(f"/v1/projects/{pid}/export", params={"predictions": "true"}).json()
    assert len(full["predictions"]) == 1 and full["predictions"][0]["score"] == 0.6
    assert client.get(f"/v1/projects/{pid}/export", params={"format": "csv"}).status_code == 422


def test_health_metrics_and_error_shapes(client) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json() == {
        "status": "ok",
        "database": "ok",
        "broker": "ok",
        "worker": "external",  # no `boxal serve` started a worker for this app
        "queue": "ok",
    }
    client.post("/v1/projects", json={"name": "m", "classes": ["a"]})
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "boxal_request_seconds" in metrics.text
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    wrong_method = client.put("/v1/projects")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    assert client.get("/v1/projects", params={"limit": 0}).status_code == 422
    assert client.get("/v1/projects", params={"limit": 5000}).json()["detail"].startswith("limit")


def test_ids_beyond_the_database_range_are_422_not_500(client) -> None:
    """Found by the fuzzer: a path id over 2**63 crashed SQLite (and over 2**31-1 would crash PostgreSQL)."""
    huge = 2**70
    for path in (
        f"/v1/projects/{huge}",
        f"/v1/projects/1/images/{huge}",
        f"/v1/projects/{2**31}/export",
        f"/v1/projects/1/rounds?cursor={huge}",
    ):
        response = client.get(path)
        assert response.status_code == 422, (path, response.text)
    assert client.delete(f"/v1/projects/1/queries/{huge}").status_code == 422
    labels = client.post("/v1/projects/1/labels", json={"labels": [{"query_id": huge, "action": "accept"}]})
    assert labels.status_code == 422 and "query_id" in labels.json()["detail"]


def test_health_names_a_worker_that_is_paused_and_one_that_exited(client, settings) -> None:
    """A real process stands in for the worker `boxal serve` supervises (this test's process for the server):
    stopped by SIGSTOP it is alive yet runs nothing, and /health said ok until 2026-12-07."""
    from app import worker_state

    stand_in = subprocess.Popen(["sleep", "60"])
    try:
        worker_state.record(settings, "running", pid=stand_in.pid, restarts=0, last_exit=None)
        (settings.broker_dir / worker_state.READY_FILE).write_text(str(stand_in.pid))

        def seen() -> tuple[str, str]:
            body = client.get("/health").json()
            return body["worker"], body["queue"]

        assert seen() == ("ok", "ok")
        stand_in.send_signal(signal.SIGSTOP)
        assert wait_for(lambda: seen() == ("paused", "unavailable"), 5, "/health to see the pause")
        stand_in.send_signal(signal.SIGCONT)
        assert wait_for(lambda: seen() == ("ok", "ok"), 5, "/health to see it continue")
    finally:
        stand_in.kill()
        stand_in.wait()
    assert seen() == ("restarting", "unavailable")  # exited; the supervisor has not recorded it yet
