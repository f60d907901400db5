"""boxal as the ML backend of a real Label Studio (label-studio from PyPI, in a venv of its own, cached
between runs; the test skips, saying why, where it cannot be installed): connected through Label Studio's
own API, its predictions, its next task, its annotations and a round it starts, against `boxal serve` with
its embedded worker."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageDraw

from tests.app.label_studio_regions import region
from tests.worker.loop import HEADERS, TOKEN, boxal, free_port, start, stop, wait_for, wait_http

VERSION = "1.23.2"  # the version tests/app/label_studio_payloads/ were recorded from
# what its venv installs: that version, and sentry-sdk below 3, which dropped the send_default_pii option
# label-studio 1.23.2 passes at start-up (unbounded in its requirements: it would not start, 2026-12-07)
REQUIREMENTS = (f"label-studio=={VERSION}", "sentry-sdk<3")
LS_TOKEN = "0123456789abcdef0123456789abcdef01234567"
CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    '<Label value="red"/><Label value="blue"/></RectangleLabels></View>'
)
SETTINGS = {  # a small model that trains a round in seconds on a CPU; rounds start from Label Studio; the
    # paper's loop, whose box queries go down to t_d (a model this weak has none at boxal's 0.5)
    "model": "faster_rcnn_r18_fpn_lite", "min_size": 96, "max_size": 96, "iterations": 10, "batch_size": 2,
    "t_d": 0.001, "round_size": 1000, "review_min_score": 0.0, "loop": "paper",
}  # fmt: skip
pytestmark = pytest.mark.slow


def label_studio_bin() -> Path:
    """label-studio in its own venv under the user's cache (once per pinned requirements and Python)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "boxal-ci"
    pinned = hashlib.sha1(" ".join(REQUIREMENTS).encode()).hexdigest()[:8]  # a new pin, a new venv
    venv = cache / f"label-studio-{VERSION}-{pinned}-py{sys.version_info[0]}{sys.version_info[1]}"
    binary = venv / "bin" / "label-studio"
    if binary.exists():
        return binary
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [str(venv / "bin" / "pip"), "install", "-q", *REQUIREMENTS],
            check=True, capture_output=True, timeout=1200,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"label-studio {VERSION} could not be installed: {exc} {detail.decode()[-300:]}")
    return binary


DATABASE = "label_studio.sqlite3"


def from_template(binary: Path, data: Path) -> None:
    """Start from the database the first run migrated (with its user), if there is one: a new one takes
    Label Studio about a minute to migrate."""
    template = binary.parents[1] / "migrated"
    if (template / DATABASE).exists():
        data.mkdir(parents=True)
        for name in (DATABASE, ".env"):
            shutil.copy2(template / name, data / name)


def keep_template(binary: Path, data: Path) -> None:
    """Keep a consistent copy (SQLite's backup) of a just-migrated database, before any test writes to it."""
    template = binary.parents[1] / "migrated"
    if (template / DATABASE).exists() or not (data / DATABASE).exists():
        return
    template.mkdir(exist_ok=True)
    source, copy = sqlite3.connect(data / DATABASE), sqlite3.connect(template / f"{DATABASE}.part")
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()
    shutil.copy2(data / ".env", template / ".env")
    (template / f"{DATABASE}.part").rename(template / DATABASE)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Label Studio and `boxal serve`, both on loopback, sharing Label Studio's local-files root."""
    binary = label_studio_bin()
    root = tmp_path_factory.mktemp("label-studio")
    docs = root / "docs"
    docs.mkdir()
    for i in range(6):  # a red or a blue square on grey, at a place of its own
        image = Image.new("RGB", (96, 96), (128, 128, 128))
        x = 8 + 9 * i
        ImageDraw.Draw(image).rectangle(
            [x, x, x + 30, x + 30], fill=(220, 30, 30) if i % 2 else (30, 30, 220)
        )
        image.save(docs / f"img{i}.png")
    ls_port, boxal_port = free_port(), free_port()
    boxal_env = {
        "BOXAL_DATA_DIR": str(root / "boxal"),
        "BOXAL_LABEL_STUDIO_DOCUMENT_ROOT": str(docs),
        "BOXAL_LABEL_STUDIO_URL": f"http://127.0.0.1:{ls_port}",  # boxal moves it to each new model
        "BOXAL_LABEL_STUDIO_TOKEN": LS_TOKEN,
    }
    served = start(boxal("serve", "--port", str(boxal_port)), boxal_env, root / "boxal.log")
    ls_env = {
        "LOCAL_FILES_SERVING_ENABLED": "true",
        "LOCAL_FILES_DOCUMENT_ROOT": str(docs),
        "ML_BLOCK_LOCAL_IP": "false",  # boxal runs on this machine's loopback
        "SSRF_PROTECTION_ENABLED": "false",  # so do its webhooks
        "LABEL_STUDIO_BASE_DATA_DIR": str(root / "ls"),
    }
    from_template(binary, root / "ls")
    studio = start(
        [str(binary), "start", "--data-dir", str(root / "ls"), "--port", str(ls_port), "--no-browser",
         "--host", f"http://127.0.0.1:{ls_port}", "--username", "admin@example.com",
         "--password", "boxal-test-pw", "--user-token", LS_TOKEN, "--enable-legacy-api-token"],
        ls_env, root / "label-studio.log",
    )  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{boxal_port}")
        wait_http(f"http://127.0.0.1:{ls_port}", timeout=300)  # its first start migrates its database
        keep_template(binary, root / "ls")
        yield {"ls": f"http://127.0.0.1:{ls_port}", "boxal": f"http://127.0.0.1:{boxal_port}", "root": root}
    finally:
        stop(studio)
        stop(served)


def rounds(boxal_api: httpx.Client) -> list[dict[str, Any]]:
    return boxal_api.get("/v1/projects/1/rounds").json()["items"]


def predictions(ls: httpx.Client, project: int) -> dict[int, dict[str, Any]]:
    """Each task's prediction of Label Studio's current ML-backend run, after asking for them all."""
    action = ls.post(
        "/api/dm/actions",
        params={"id": "retrieve_tasks_predictions", "project": project},
        json={"selectedItems": {"all": True, "excluded": []}},
    )
    assert action.status_code == 200, action.text
    tasks = ls.get("/api/tasks", params={"project": project, "fields": "all", "page_size": 100}).json()[
        "tasks"
    ]
    return {task["id"]: max(task["predictions"], key=lambda p: p["id"]) for task in tasks}


def test_label_studio_runs_boxal_as_its_ml_backend(servers: dict[str, Any]) -> None:
    ls = httpx.Client(base_url=servers["ls"], headers={"Authorization": f"Token {LS_TOKEN}"}, timeout=120)
    boxal_api = httpx.Client(base_url=servers["boxal"], headers=HEADERS, timeout=60)
    made = ls.post(
        "/api/projects", json={"title": "cells", "label_config": CONFIG, "sampling": "Uncertainty sampling"}
    )
    assert made.status_code == 201, made.text
    project = made.json()["id"]
    tasks = [{"image": f"/data/local-files/?d=img{i}.png"} for i in range(6)]
    assert ls.post(f"/api/projects/{project}/import", json=tasks).status_code == 201
    # connected as Label Studio's users do it: the ML backend's URL, basic auth with a boxal token
    backend = ls.post(
        "/api/ml",
        json={"url": f"{servers['boxal']}/label-studio", "project": project, "title": "boxal",
              "auth_method": "BASIC_AUTH", "basic_auth_user": "boxal", "basic_auth_pass": TOKEN,
              "extra_params": json.dumps({"settings": SETTINGS})},
    )  # fmt: skip
    assert backend.status_code == 201, backend.text
    assert backend.json()["model_version"] == "boxal-1-untrained"
    [hook] = ls.get("/api/webhooks", params={"project": project}).json()  # made by Label Studio itself
    ls.patch(f"/api/webhooks/{hook['id']}", json={"headers": {"Authorization": f"Bearer {TOKEN}"}})

    first = predictions(ls, project)
    assert {p["model_version"] for p in first.values()} == {"boxal-1-untrained"}
    ids = sorted(first)
    # two images labeled in Label Studio become boxal's initial labeled set, their lead time its seconds
    for task_id, i in ((ids[0], 0), (ids[1], 1)):
        x = 8 + 9 * i
        box = region("a", [x, x, x + 30, x + 30], "blue" if i % 2 == 0 else "red", 96, 96)
        made = ls.post(f"/api/tasks/{task_id}/annotations", json={"result": [box], "lead_time": 6.5})
        assert made.status_code == 201, made.text
    events = wait_for(
        lambda: (
            (items := boxal_api.get("/v1/projects/1/labels").json()["items"]) and len(items) == 2 and items
        ),
        30,
        "the two annotations in boxal",
    )
    assert [(e["action"], e["annotator"], e["duration_ms"]) for e in events] == [
        ("label_all", "label-studio:1", 6500)
    ] * 2

    # a round started from Label Studio (its Start Training) trains and changes the model version
    started = ls.post(f"/api/ml/{backend.json()['id']}/train", json={})
    assert started.status_code == 200, started.text
    trained = wait_for(
        lambda: [r for r in rounds(boxal_api) if r["round"] == 1 and r["state"] in ("open", "failed")], 300,
        "round 1 to open",
    )[0]  # fmt: skip
    assert trained["state"] == "open", trained["error"]
    second = predictions(ls, project)
    unlabeled = [task_id for task_id in ids if task_id not in ids[:2]]
    assert {second[t]["model_version"] for t in unlabeled} == {trained["model_version"]}
    assert any(second[t]["result"] for t in unlabeled)

    # boxal moved the project to that version (on Label Studio's first call since), so that its uncertainty
    # sampling, on that version's predictions, serves the image of boxal's first query
    wait_for(
        lambda: ls.get(f"/api/projects/{project}").json()["model_version"] == trained["model_version"],
        60,
        "Label Studio's project on the new model version",
    )
    leased = boxal_api.post(
        "/v1/projects/1/queries", json={"k": 1, "annotator": "probe", "unit": "box"}
    ).json()
    [query] = leased["queries"]
    boxal_api.delete(f"/v1/projects/1/queries/{query['query_id']}")
    following = ls.get(f"/api/projects/{project}/next").json()
    assert f"ls-task-{following['id']}" == query["image"]["external_id"]

    # its annotation: the asked box kept, every other prediction deleted, one box drawn
    shown = second[following["id"]]["result"]
    asked = next(r for r in shown if r["id"] == f"boxal-{query['box_id']}")
    drawn = region("new", [1, 60, 20, 90], "red", 96, 96)
    made = ls.post(
        f"/api/tasks/{following['id']}/annotations", json={"result": [asked, drawn], "lead_time": 9.0}
    )
    assert made.status_code == 201, made.text
    review = wait_for(
        lambda: [
            e for e in boxal_api.get("/v1/projects/1/labels").json()["items"] if e["action"] == "review"
        ],
        30,
        "the review in boxal",
    )[0]
    verdicts = {change["box_id"]: change["action"] for change in review["after"]["reviewed"]}
    assert verdicts[query["box_id"]] == "accept"
    assert set(verdicts.values()) <= {"accept", "background"} and len(verdicts) == len(shown)
    assert len(review["after"]["boxes"]) == 1 and review["duration_ms"] == 9000
