"""Helpers for end-to-end tests of the active-learning loop over HTTP against real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from formats.coco import load_coco
from oracle.digits import CLASSES, DigitScenes

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bxl_end-to-end-admin-token-42"  # BOXAL_ADMIN_TOKEN of the servers these tests start
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
FAST = {
    "loop": "paper",  # these tests follow the paper's loop; boxal's default loop has tests of its own
    "model": "faster_rcnn_r18_fpn_lite",
    "min_size": 96,
    "max_size": 96,
    "epochs": 2,
    "batch_size": 2,
    "t_d": 0.001,
    "strategy": "least_confidence",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("ab")
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "BOXAL_ADMIN_TOKEN": TOKEN, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def boxal(*args: str) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


T = TypeVar("T")


def wait_for(condition: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy (returned); fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up")


def post_labels(client: httpx.Client, pid: int, labels: list[dict]) -> dict:
    response = client.post(f"/v1/projects/{pid}/labels", json={"labels": labels})
    assert response.status_code == 200, response.text
    return response.json()


def wait_job(
    client: httpx.Client, job_id: str, timeout: float = 300, until: tuple[str, ...] = ("succeeded", "failed")
) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in until:
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s: {job}")


def digit_project(
    client: httpx.Client,
    scenes: DigitScenes,
    *,
    pool: int,
    initial: int,
    test: int,
    name: str = "digits",
    **settings: Any,
) -> tuple[int, dict[str, list]]:
    """A project over digit scenes: ``pool`` train scenes (the first ``initial`` with imported ground
    truth: the initial labeled set), ``test`` test scenes with evaluation ground truth. Returns the
    project id and the ground truth per pool external id (for answering like an oracle)."""
    response = client.post(
        "/v1/projects", json={"name": name, "classes": CLASSES, "settings": {**FAST, **settings}}
    )
    response.raise_for_status()
    pid = response.json()["id"]
    train, test_data = load_coco(scenes.train_json), load_coco(scenes.test_json)
    truth: dict[str, list] = {}
    for split, data, count in (("pool", train, pool), ("test", test_data, test)):
        images = data.images[:count]
        body = {
            "images": [
                {
                    "uri": f"file://{scenes.images / im.file_name}",
                    "split": split,
                    "external_id": f"{split}-{im.id}",
                    "width": im.width,
                    "height": im.height,
                }
                for im in images
            ]
        }
        client.post(f"/v1/projects/{pid}/images", json=body).raise_for_status()
        keep = images if split == "test" else images[:initial]
        coco = {
            "images": [
                {"id": f"{split}-{im.id}", "file_name": im.file_name, "width": im.width, "height": im.height}
                for im in keep
            ],
            "categories": [{"id": k, "name": v} for k, v in data.categories.items()],
            "annotations": [
                {
                    "id": i,
                    "image_id": f"{split}-{a.image_id}",
                    "category_id": a.category_id,
                    "bbox": [a.bbox[0], a.bbox[1], a.bbox[2] - a.bbox[0], a.bbox[3] - a.bbox[1]],
                }
                for i, a in enumerate(data.annotations)
                if a.image_id in {im.id for im in keep}
            ],
        }
        client.post(f"/v1/projects/{pid}/imports", json={"format": "coco", "data": coco}).raise_for_status()
        if split == "pool":
            for a in data.annotations:
                truth.setdefault(f"pool-{a.image_id}", []).append((a.bbox, data.categories[a.category_id]))
    return pid, truth


def oracle_answer(query: dict, truth: dict[str, list]) -> dict:
    """The paper's oracle: adjust to the best-overlapping ground truth box at IoU >= 0.5, else background."""
    from formats.geometry import iou

    best = max(
        truth.get(query["image"]["external_id"], []), key=lambda t: iou(t[0], query["bbox"]), default=None
    )
    if best is not None and iou(best[0], query["bbox"]) >= 0.5:
        return {
            "query_id": query["query_id"],
            "action": "adjust",
            "bbox": best[0],
            "label": best[1],
            "duration_ms": 7000,
        }
    return {"query_id": query["query_id"], "action": "background", "duration_ms": 1600}


def annotator_answer(query: dict, truth: dict[str, list], *, adjust: bool) -> dict:
    """An annotator who moves the box onto the nearest object of its image (adjust) or calls it background."""
    objects = truth.get(query["image"]["external_id"], [])
    if not adjust or not objects:
        return {"query_id": query["query_id"], "action": "background", "duration_ms": 1600}
    x, y = (query["bbox"][0] + query["bbox"][2]) / 2, (query["bbox"][1] + query["bbox"][3]) / 2
    bbox, label = min(
        objects, key=lambda o: ((o[0][0] + o[0][2]) / 2 - x) ** 2 + ((o[0][1] + o[0][3]) / 2 - y) ** 2
    )
    return {
        "query_id": query["query_id"],
        "action": "adjust",
        "bbox": bbox,
        "label": label,
        "duration_ms": 7000,
    }
