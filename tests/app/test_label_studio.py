"""Label Studio's ML-backend protocol (app/label_studio/) against payloads Label Studio 1.23.2 sent
(tests/app/label_studio_payloads/, recorded from a real instance; the access token redacted): every
endpoint, and bad input answered with a clear 4xx that changes nothing."""

from __future__ import annotations

import base64
import copy
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.models import Box, BoxScore, LabelEvent, LabelStudioLink, Project, Round
from tests.app.label_studio_regions import region
from tests.conftest import ADMIN_TOKEN
from tests.factories import db_state, write_image

PAYLOADS = Path(__file__).parent / "label_studio_payloads"
CONFIG = json.loads((PAYLOADS / "setup.json").read_text())["schema"]  # RectangleLabels "label": cell, blob


def payload(name: str) -> dict[str, Any]:
    return json.loads((PAYLOADS / f"{name}.json").read_text())


def basic(token: str, user: str = "boxal") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


@pytest.fixture
def docs(settings, tmp_path: Path) -> Path:
    """Label Studio's local-files document root, as boxal reads it; two 128x96 images."""
    root = tmp_path / "ls-docs"
    for i in range(2):
        write_image(root / f"img{i}.png", 128, 96)
    settings.label_studio_document_root = root
    return root


@pytest.fixture
def linked(client, docs) -> dict[str, Any]:
    """Label Studio project 2 connected through the recorded /setup (its extra params: settings k 5)."""
    response = client.post("/label-studio/setup", json=payload("setup"))
    assert response.status_code == 200, response.text
    return response.json()


def open_round(database, project_id: int, boxes: list[tuple[int, list[float], float, float]]) -> list[int]:
    """A served round 1 (model version m1) with predicted boxes (image, xyxy, score, informativeness)."""
    with database.transaction() as session:
        project = session.get(Project, project_id)
        session.add(
            Round(project_id=project_id, number=1, state="open", model_version="m1", classes=project.classes)
        )
        session.flush()
        round_id = session.scalar(select(Round.id).where(Round.project_id == project_id, Round.number == 1))
        rows = [
            Box(project_id=project_id, image_id=image_id, source="predicted", status="unlabeled", x1=b[0],
                y1=b[1], x2=b[2], y2=b[3], label=0, score=score, model_version="m1", round_predicted=1)
            for image_id, b, score, _ in boxes
        ]  # fmt: skip
        session.add_all(rows)
        session.flush()
        session.add_all(
            BoxScore(round_id=round_id, box_id=row.id, informativeness=value)
            for row, (_, _, _, value) in zip(rows, boxes, strict=True)
        )
        project.serving_round = 1
        return [row.id for row in rows]


def predicted(client) -> list[dict[str, Any]]:
    response = client.post("/label-studio/predict", json=payload("predict"))
    assert response.status_code == 200, response.text
    return response.json()["results"]


def test_health_answers_label_studio_without_credentials(client) -> None:
    response = client.get("/label-studio/health", headers={"Authorization": ""})
    assert response.status_code == 200
    assert response.json()["status"] == "UP"


def test_setup_links_a_new_project_once_with_its_classes_and_extra_params(client, linked) -> None:
    assert linked == {"model_version": "boxal-1-untrained"}
    project = client.get("/v1/projects/1").json()
    assert project["classes"] == ["cell", "blob"]
    assert project["settings"]["k"] == 5  # extra_params {"settings": {"k": 5}}
    again = client.post("/label-studio/setup", json=payload("setup"))  # Label Studio calls it often
    assert again.status_code == 200
    assert [p["id"] for p in client.get("/v1/projects").json()["items"]] == [1]


def test_setup_adds_a_class_the_config_gained(client, linked) -> None:
    body = payload("setup")
    body["schema"] = CONFIG.replace('<Label value="blob"/>', '<Label value="blob"/><Label value="rbc"/>')
    assert client.post("/label-studio/setup", json=body).status_code == 200
    assert client.get("/v1/projects/1").json()["classes"] == ["cell", "blob", "rbc"]


@pytest.mark.parametrize(
    ("schema", "says"),
    [
        ("<View><Image name='image' value='$image'/></View>", "no <RectangleLabels>"),
        ("<View><Image name='image' value='$image'/>", "not XML"),
        (
            "<View><Image name='img' value='$image'/><RectangleLabels name='label' toName='image'>"
            "<Label value='cell'/></RectangleLabels></View>",
            "names no <Image name='image'>",
        ),
        (
            "<View><Image name='image' value='$image'/><RectangleLabels name='label' toName='image'>"
            "</RectangleLabels></View>",
            "needs <Label value=...>",
        ),
        ("", "empty"),
    ],
)
def test_setup_refuses_a_label_config_it_cannot_serve(client, database, docs, schema: str, says: str) -> None:
    body = payload("setup")
    body["schema"] = schema
    before = db_state(database)
    response = client.post("/label-studio/setup", json=body)
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"]
    assert db_state(database) == before


def test_setup_refuses_a_dropped_class_and_unknown_extra_params(client, database, linked) -> None:
    before = db_state(database)
    body = payload("setup")
    body["schema"] = CONFIG.replace('<Label value="blob"/>', "")
    response = client.post("/label-studio/setup", json=body)
    assert response.status_code == 409 and "['blob']" in response.json()["detail"]
    body = payload("setup")
    body["extra_params"] = '{"lr": 0.1}'
    response = client.post("/label-studio/setup", json=body)
    assert response.status_code == 422 and "['lr']" in response.json()["detail"]
    assert db_state(database) == before


def test_credentials_basic_or_bearer_and_scope(client, database, docs) -> None:
    from app.auth.service import create_token

    body = payload("setup")
    assert client.post("/label-studio/setup", json=body, headers={"Authorization": ""}).status_code == 401
    assert client.post("/label-studio/setup", json=body, headers=basic("bxl_wrong")).status_code == 401
    assert client.post("/label-studio/setup", json=body, headers=basic(ADMIN_TOKEN)).status_code == 200
    with database.transaction() as session:
        _, annotator = create_token(session, "ann", "annotator", projects=[1])
    other = {**body, "project": "3.1796238999"}  # a Label Studio project not connected yet
    refused = client.post("/label-studio/setup", json=other, headers=basic(annotator))
    assert refused.status_code == 403 and "admin token" in refused.json()["detail"]
    assert client.post("/label-studio/setup", json=body, headers=basic(annotator)).status_code == 200
    # the annotator token of project 1 may now predict and answer for it, never start a round
    assert (
        client.post("/label-studio/predict", json=payload("predict"), headers=basic(annotator)).status_code
        == 200
    )
    training = client.post("/label-studio/webhook", json=payload("start_training"), headers=basic(annotator))
    assert training.status_code == 403


def test_a_token_of_another_project_learns_nothing(client, database, linked) -> None:
    from app.auth.service import create_token

    client.post("/v1/projects", json={"name": "other", "classes": ["x"]})
    with database.transaction() as session:
        _, elsewhere = create_token(session, "bob", "annotator", projects=[2])
    for path, name in (("setup", "setup"), ("predict", "predict"), ("webhook", "annotation_created")):
        response = client.post(f"/label-studio/{path}", json=payload(name), headers=basic(elsewhere))
        assert response.status_code == 404, (path, response.text)
        assert "Label Studio project 2 is not connected" in response.json()["detail"]


def test_predict_marks_the_asked_boxes_and_orders_tasks_by_boxal_ranking(
    client, database, linked, docs
) -> None:
    predicted(client)  # registers the two tasks' images (ids 1 and 2: tasks 5 and 6)
    # image 2 holds the most informative box; image 1 a confident box nobody asks about
    ids = open_round(
        database,
        1,
        [(1, [10, 10, 50, 60], 0.95, 0.10), (2, [32, 24, 64, 48], 0.30, 0.90), (2, [0, 0, 8, 8], 0.2, 0.05)],
    )
    with database.transaction() as session:
        session.get(Project, 1).settings = {**session.get(Project, 1).settings, "round_size": 1}
    first, second = predicted(client)  # tasks 5 (image 1) and 6 (image 2)
    assert first["model_version"] == second["model_version"] == "m1"
    assert second["score"] < first["score"]  # Label Studio serves the lowest score first
    [confident] = first["result"]
    assert confident["id"] == f"boxal-{ids[0]}" and "meta" not in confident
    value = confident["value"]
    assert [value[k] for k in ("x", "y", "width", "height")] == pytest.approx(
        [100 * 10 / 128, 100 * 10 / 96, 100 * 40 / 128, 100 * 50 / 96]
    )
    assert value["rectanglelabels"] == ["cell"] and value["rotation"] == 0
    [asked] = second["result"]  # the low-score, low-informativeness box is neither asked nor confident
    assert asked["id"] == f"boxal-{ids[1]}" and asked["meta"]["text"][0].startswith("boxal asks")


@pytest.mark.parametrize(
    ("data", "status", "says"),
    [
        ({"image": "/data/local-files/?d=missing.png"}, 404, "does not exist"),
        ({"image": "/data/local-files/?d=../../../etc/passwd"}, 403, "not a path below"),
        ({"text": "no image here"}, 422, "no image URL in data.image"),
        ({"image": "ftp://host/img.png"}, 422, "not an image boxal can read"),
        ({"image": "https://elsewhere.example/img.png"}, 403, "BOXAL_IMAGE_ROOTS"),
    ],
)
def test_predict_refuses_a_task_whose_image_cannot_be_read(
    client, database, linked, data: dict, status: int, says: str
) -> None:
    body = payload("predict")
    body["tasks"][1]["data"] = data
    before = db_state(database)
    response = client.post("/label-studio/predict", json=body)
    assert response.status_code == status, response.text
    assert "task 6" in response.json()["detail"] and says in response.json()["detail"]
    assert db_state(database) == before  # the readable task 5 was not registered either


def test_an_image_url_too_long_is_422_and_the_connection_serves_the_next_request(
    live_server, database, docs, admin_token
) -> None:
    """Over 4,096 characters a task's URL was a 500 that also reset the kept-alive connection."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as http:
        assert http.post("/label-studio/setup", json=payload("setup")).status_code == 200
        long_url = "/data/local-files/?d=" + "a" * 4075 + ".png"
        assert len(long_url) == 4100
        task = {"id": 9, "data": {"image": long_url}}
        for path, body in (
            ("/label-studio/predict", {**payload("predict"), "tasks": [task]}),
            ("/label-studio/webhook", {**payload("annotation_created"), "task": task}),
        ):
            before = db_state(database)
            response = http.post(path, json=body)
            assert response.status_code == 422, response.text
            assert "4100 characters long; at most 4096" in response.json()["detail"]
            assert db_state(database) == before
            assert http.get("/health").status_code == 200  # the same connection, still open


def test_local_files_resolve_strictly_below_the_document_root_and_nothing_outside_is_opened(
    client, database, settings, linked, docs, tmp_path: Path, monkeypatch
) -> None:
    """Refused alike (403, the same words) whether the file exists or not, before anything is opened:
    '..' (plain or percent-encoded), an absolute path, a link leading out; and uploads likewise."""
    import builtins

    from PIL import Image as PILImage

    beside = tmp_path / "beside"  # another allowed root's files, which annotators cannot register
    write_image(beside / "secret.png", 16, 16)
    (docs / "out.png").symlink_to(beside / "secret.png")
    (docs / "dangling.png").symlink_to(beside / "missing.png")
    (docs / "sub").mkdir()
    settings.label_studio_media_root = tmp_path / "media"
    write_image(tmp_path / "media" / "upload" / "2" / "ok.png", 16, 16)
    opened: list[str] = []
    real_open, real_image_open = builtins.open, PILImage.open

    def spy_open(file, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_image_open(fp, *args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(str(fp))
        return real_image_open(fp, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(PILImage, "open", spy_image_open)
    cases = {
        "../beside/secret.png": "exists",
        "../beside/missing.png": "missing",
        "%2e%2e/beside/secret.png": "exists, encoded",
        "%2E%2E%2Fbeside%2Fmissing.png": "missing, encoded",
        "sub/../../beside/secret.png": "exists, through a folder",
        f"{beside}/secret.png": "absolute, exists",
        f"{beside}/missing.png": "absolute, missing",
        "out.png": "a link leading out, to a file",
        "dangling.png": "a link leading out, to nothing",
        "../data/admin-token": "the data dir's token",
    }
    before = db_state(database)
    answers = {}
    for d, case in cases.items():
        body = payload("predict")
        body["tasks"][1]["data"] = {"image": f"/data/local-files/?d={d}"}
        response = client.post("/label-studio/predict", json=body)
        answers[case] = (response.status_code, response.json()["detail"].split("'")[0])
    uploads = ["/data/upload/../../beside/secret.png", "/data/upload/%2e%2e/%2e%2e/beside/missing.png"]
    for url in uploads:
        body = payload("predict")
        body["tasks"][1]["data"] = {"image": url}
        response = client.post("/label-studio/predict", json=body)
        answers[url] = (response.status_code, response.json()["detail"].split("'")[0])
    assert {status for status, _ in answers.values()} == {403}, answers
    assert len({words for case, (_, words) in answers.items() if not case.startswith("/")}) == 1, answers
    assert not [path for path in opened if "beside" in path or "admin-token" in path], opened
    assert db_state(database) == before
    body = payload("predict")
    body["tasks"][1]["data"] = {"image": "/data/upload/2/ok.png"}  # below the upload folder: read
    assert client.post("/label-studio/predict", json=body).status_code == 200


def test_task_images_on_a_web_server_are_read_through_the_remote_path(client, settings, linked, web) -> None:
    settings.image_roots = [*settings.image_roots, web]  # a URL prefix boxal may read from
    body = payload("predict")
    body["tasks"][0]["data"] = {"image": f"{web}p0.png"}
    assert client.post("/label-studio/predict", json=body).status_code == 200
    [image] = [
        im for im in client.get("/v1/projects/1/images").json()["items"] if im["external_id"] == "ls-task-5"
    ]
    assert (image["width"], image["height"]) == (40, 30)  # read from the web server


def test_uploads_need_the_media_root(client, database, linked) -> None:
    body = payload("predict")
    body["tasks"][0]["data"] = {"image": "/data/upload/2/abc.png"}
    response = client.post("/label-studio/predict", json=body)
    assert response.status_code == 422 and "BOXAL_LABEL_STUDIO_MEDIA_ROOT" in response.json()["detail"]


def test_calls_for_a_project_never_connected_are_404_and_change_nothing(client, database, linked) -> None:
    before = db_state(database)
    for path, name in (
        ("predict", "predict"),
        ("webhook", "annotation_created"),
        ("webhook", "start_training"),
    ):
        body = payload(name)
        body["project"] = {"id": 99} if isinstance(body["project"], dict) else "99.1700000000"
        if "annotation" in body:
            body["annotation"]["project"] = 99
        response = client.post(f"/label-studio/{path}", json=body)
        assert response.status_code == 404, response.text
        assert "Label Studio project 99 is not connected" in response.json()["detail"]
    assert db_state(database) == before


def annotation(
    result: list[dict[str, Any]], lead_time: float = 4.25, annotation_id: int = 3
) -> dict[str, Any]:
    body = payload("annotation_created")
    body["annotation"]["result"] = result
    body["annotation"]["lead_time"] = lead_time
    body["annotation"]["id"] = annotation_id
    return body


def rect(region_id: str, xyxy: list[float], label: str = "cell") -> dict[str, Any]:
    return region(region_id, xyxy, label, 128, 96)


def test_an_annotation_before_any_model_labels_the_whole_image(client, linked) -> None:
    response = client.post("/label-studio/webhook", json=annotation([rect("a1", [10, 10, 50, 60])]))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "recorded"
    [event] = client.get("/v1/projects/1/labels").json()["items"]
    assert event["action"] == "label_all" and event["duration_ms"] == 4250
    assert event["annotator"] == "label-studio:1"
    assert event["after"]["boxes"][0]["bbox"] == pytest.approx([10, 10, 50, 60])


def test_an_annotation_reviews_the_predictions_drawn(client, database, linked) -> None:
    predicted(client)
    kept, moved, deleted, redrawn = open_round(
        database,
        1,
        [(1, [10, 10, 50, 60], 0.9, 0.5), (1, [60, 10, 90, 40], 0.9, 0.4), (1, [5, 60, 30, 90], 0.9, 0.3),
         (1, [90, 50, 120, 90], 0.9, 0.2)],
    )  # fmt: skip
    result = [
        rect(f"boxal-{kept}", [10, 10, 50, 60]),
        rect(f"boxal-{moved}", [62, 12, 92, 44], "blob"),
        rect("x9f3", [92, 52, 121, 91]),  # deleted and drawn again by hand: still that prediction, adjusted
        rect("n1", [100, 5, 120, 20]),  # an object the model missed
    ]
    response = client.post("/label-studio/webhook", json=annotation(result, lead_time=12.0))
    assert response.status_code == 200, response.text
    [event] = client.get("/v1/projects/1/labels").json()["items"][-1:]
    assert event["action"] == "review" and event["duration_ms"] == 12000
    actions = {change["box_id"]: change["action"] for change in event["after"]["reviewed"]}
    assert actions == {kept: "accept", moved: "adjust", redrawn: "adjust", deleted: "background"}
    assert [box["bbox"] for box in event["after"]["boxes"]] == [pytest.approx([100, 5, 120, 20])]
    with database.transaction(write=False) as session:
        assert session.get(Box, moved).label == 1 and session.get(Box, deleted).status == "background"


def test_an_annotation_sent_again_is_recorded_once_and_a_change_corrects_it(client, database, linked) -> None:
    """ANNOTATION_UPDATED with other boxes corrects boxal's answer (the log keeps both); deletions keep it."""
    body = annotation([rect("a1", [10, 10, 50, 60])])
    first = client.post("/label-studio/webhook", json=body).json()
    again = client.post("/label-studio/webhook", json=body)
    assert again.status_code == 200 and again.json()["status"] == "already_recorded"
    assert again.json()["event_id"] == first["event_id"]
    updated = payload("annotation_updated")
    updated["annotation"]["result"] = [rect("a1", [12, 10, 50, 60]), rect("a2", [70, 20, 100, 50])]
    response = client.post("/label-studio/webhook", json=updated)
    assert response.status_code == 200, response.text
    events = client.get("/v1/projects/1/labels").json()["items"]
    answers = [e for e in events if e["kind"] in ("answer", "correction")]
    assert [e["kind"] for e in answers] == ["answer", "correction"]
    assert answers[1]["after"]["supersedes"] == answers[0]["id"] and len(answers[1]["after"]["boxes"]) == 2
    image = client.get(f"/v1/projects/1/images/{answers[0]['image_id']}").json()
    labeled = sorted(b["bbox"] for b in image["boxes"] if b["status"] == "labeled")
    assert labeled == [[12, 10, 50, 60], [70, 20, 100, 50]]  # the boxes of the updated annotation, only
    before = db_state(database)
    assert client.post("/label-studio/webhook", json=updated).json()["status"] == "already_recorded"
    deleted = client.post("/label-studio/webhook", json=payload("annotations_deleted"))
    assert deleted.status_code == 200 and deleted.json()["status"] == "kept"
    assert db_state(database) == before


@pytest.mark.parametrize(
    ("region", "says"),
    [
        ({"value": {"x": 1, "y": 1, "width": 5, "height": 5, "rotation": 30, "rectanglelabels": ["cell"]}},
         "rotated"),
        ({"value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["rbc"]}}, "not one of"),
        ({"value": {"x": 120, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cell"]}}, "no area"),
        ({"value": {"x": "left", "y": 1, "width": 5, "height": 5, "rectanglelabels": ["cell"]}}, "numbers"),
    ],
)  # fmt: skip
def test_an_annotation_boxal_cannot_take_is_422_and_changes_nothing(
    client, database, linked, region: dict, says: str
) -> None:
    predicted(client)
    before = db_state(database)
    bad = {**rect("r1", [10, 10, 50, 60]), **region}
    response = client.post("/label-studio/webhook", json=annotation([rect("r0", [1, 1, 9, 9]), bad]))
    assert response.status_code == 422, response.text
    assert "annotation.result[1]" in response.json()["detail"] and says in response.json()["detail"]
    assert db_state(database) == before


def test_a_skipped_task_and_other_actions_record_nothing(client, database, linked) -> None:
    predicted(client)
    before = db_state(database)
    skipped = annotation([])
    skipped["annotation"]["was_cancelled"] = True
    assert client.post("/label-studio/webhook", json=skipped).json()["status"] == "skipped"
    other = client.post("/label-studio/webhook", json={"action": "TASKS_CREATED", "tasks": [{"id": 7}]})
    assert other.status_code == 200 and other.json()["status"] == "ignored"
    assert db_state(database) == before


def test_start_training_starts_the_next_round_once(client, database, linked) -> None:
    refused = client.post("/label-studio/webhook", json=payload("start_training"))
    assert refused.status_code == 409 and "nothing to train on" in refused.json()["detail"]
    client.post("/label-studio/webhook", json=annotation([rect("a1", [10, 10, 50, 60])]))
    started = client.post("/label-studio/webhook", json=payload("start_training"))
    assert started.status_code == 200 and started.json()["status"] == "started"
    again = client.post("/label-studio/train", json={"project": "2.1796238758"})  # the older call
    assert again.status_code == 201 and again.json()["status"] == "already_training"
    with database.transaction(write=False) as session:
        assert session.scalar(select(Round.state).where(Round.number == 1)) == "training"
        assert session.scalar(select(LabelEvent.action)) == "label_all"


def test_a_webhook_missing_what_it_needs_is_422(client, database, linked) -> None:
    before = db_state(database)
    body = copy.deepcopy(payload("annotation_created"))
    del body["task"]
    response = client.post("/label-studio/webhook", json=body)
    assert response.status_code == 422 and "needs annotation and task" in response.json()["detail"]
    response = client.post("/label-studio/webhook", json={"action": "ANNOTATION_CREATED", "project": "x"})
    assert response.status_code == 422
    assert db_state(database) == before


@pytest.fixture
def studio() -> Iterator[dict[str, Any]]:
    """A stand-in for Label Studio's own API on loopback: records each call, fails PATCH when told to."""
    calls: list[tuple[str, str, str, dict]] = []
    state = {"fail": False}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            calls.append((self.command, self.path, self.headers.get("Authorization", ""), body))
            failed = state["fail"] and self.command == "PATCH"
            reply = json.dumps({"access": "fresh-access"} if "refresh" in self.path else {}).encode()
            self.send_response(500 if failed else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_PATCH = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "calls": calls, "state": state}
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("token", "sent"), [("legacy-key", "Token legacy-key"), ("h.p.s", "Bearer fresh-access")]
)
def test_label_studio_is_moved_to_each_new_model_version_once(
    client, database, settings, linked, studio, token: str, sent: str
) -> None:
    settings.label_studio_url, settings.label_studio_token = studio["url"], token
    client.post("/label-studio/webhook", json=annotation([rect("a1", [10, 10, 50, 60])]))
    assert studio["calls"] == []  # no model yet: nothing to move to
    predicted(client)
    open_round(database, 1, [(2, [32, 24, 64, 48], 0.9, 0.9)])
    client.post("/label-studio/setup", json=payload("setup"))
    moved = [
        (method, path, auth, body) for method, path, auth, body in studio["calls"] if "refresh" not in path
    ]
    assert moved == [
        ("POST", "/api/dm/actions?id=retrieve_tasks_predictions&project=2", sent,
         {"selectedItems": {"all": True, "excluded": []}}),
        ("PATCH", "/api/projects/2", sent, {"model_version": "m1"}),
    ]  # fmt: skip
    calls = len(studio["calls"])
    client.post("/label-studio/webhook", json=payload("annotations_deleted"))
    client.post("/label-studio/setup", json=payload("setup"))
    assert len(studio["calls"]) == calls  # already there


def test_a_failed_move_is_tried_again_on_the_next_call(client, database, settings, linked, studio) -> None:
    settings.label_studio_url, settings.label_studio_token = studio["url"], "legacy-key"
    predicted(client)
    open_round(database, 1, [(2, [32, 24, 64, 48], 0.9, 0.9)])
    studio["state"]["fail"] = True
    assert (
        client.post("/label-studio/setup", json=payload("setup")).status_code == 200
    )  # boxal answers anyway
    with database.transaction(write=False) as session:
        assert session.scalar(select(LabelStudioLink.synced_version)) is None
    studio["state"]["fail"] = False
    client.post("/label-studio/setup", json=payload("setup"))
    assert [c[0] for c in studio["calls"]] == ["POST", "PATCH", "POST", "PATCH"]
