"""The client library against a running server (uvicorn on loopback, real HTTP): every endpoint family,
paging to the end, errors as BoxalError; retries against a loopback HTTP server that answers 503 or drops
connections, counting what reached it."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from boxal.client import BoxalError, Client
from tests.conftest import LiveServer
from tests.factories import coco_for, write_image


def test_an_annotation_loop_and_every_endpoint_family(
    live_server: LiveServer, admin_token: str, tmp_path: Path
) -> None:
    with Client(live_server.url, token=admin_token, page_size=2) as boxal:
        assert boxal.health()["database"] == "ok"
        pid = boxal.create_project("cells", ["cat", "dog"], {"round_size": 50})["id"]
        assert [p["id"] for p in boxal.projects()] == [pid]
        files = [write_image(tmp_path / f"img{i}.png") for i in range(5)]
        images = boxal.register_images(pid, [{"uri": f"file://{f}", "split": "pool"} for f in files], batch=2)
        uploaded = boxal.upload_images(pid, [write_image(tmp_path / "up.png", 32, 32)], split="test")
        assert len(images) == 5 and uploaded[0]["split"] == "test"
        assert len(boxal.images(pid)) == 6 and len(boxal.images(pid, split="pool")) == 5  # pages of 2
        assert boxal.image_content(pid, images[0]["id"]) == files[0].read_bytes()
        report = boxal.import_coco(
            pid, coco_for(images[:1], {"img0": [([1, 2, 20, 30], "dog")]}, ["cat", "dog"])
        )
        assert report["boxes_imported"] == 1
        preds = coco_for(images[1:], {"img1": [([2, 2, 30, 30], "cat")], "img2": [([4, 4, 9, 9], "dog")]},
                         ["cat", "dog"], scores=True)  # fmt: skip
        boxal.import_coco(pid, preds, kind="predictions", model_version="theirs")
        leased = boxal.lease(pid, k=5, annotator="ana", unit="box")  # the two imported boxes, no images
        assert len(leased) == 2
        boxal.release(pid, leased[1]["query_id"])
        done = boxal.answer(
            pid,
            [{"query_id": leased[0]["query_id"], "action": "adjust", "bbox": [3, 3, 28, 28], "label": "cat"}],
        )
        assert [r["status"] for r in done["labels"]] == ["recorded"]
        again = boxal.answer(
            pid,
            [{"query_id": leased[0]["query_id"], "action": "adjust", "bbox": [3, 3, 28, 28], "label": "cat"}],
        )
        assert [r["status"] for r in again["labels"]] == ["already_recorded"]  # idempotent per query
        assert [e["action"] for e in boxal.label_events(pid) if e["kind"] == "answer"] == ["adjust"]
        assert boxal.image(pid, images[1]["id"])["boxes"][0]["status"] == "labeled"
        # rounds, jobs and the curve with a worker: the oracle runs on this client (test_smoke.py)
        assert boxal.curve(pid) == [] and [(r["round"], r["state"]) for r in boxal.rounds(pid)] == [
            (0, "open")
        ]
        coco = boxal.export(pid)
        assert len(coco["annotations"]) == 2
        voc = boxal.export(pid, "voc", complete=True)
        assert zipfile.ZipFile(io.BytesIO(voc)).namelist()[0] == "Annotations/img0.xml"
        boxal.update_settings(pid, {"round_size": 10})
        assert boxal.project(pid)["settings"]["round_size"] == 10
        with pytest.raises(BoxalError) as missing:
            boxal.project(pid + 1000)
        assert (missing.value.status, missing.value.error) == (404, "not_found")
        with pytest.raises(BoxalError) as bad:
            boxal.lease(pid, k=0, annotator="ana")
        assert bad.value.status == 422 and "k" in str(bad.value.detail)


class Flaky(BaseHTTPRequestHandler):
    """Answers 503 (Retry-After: 0) to the first ``busy`` requests, or drops the first ``drop``
    connections without answering; then 200 with {"ok": true}."""

    busy = 0
    drop = 0
    seen: list[str] = []

    def _handle(self) -> None:
        type(self).seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if type(self).drop > 0:
            type(self).drop -= 1
            self.close_connection = True
            self.connection.shutdown(2)  # the request arrived; no answer ever comes
            return
        if type(self).busy > 0:
            type(self).busy -= 1
            self.send_response(503)
            self.send_header("Retry-After", "0")
            body = b'{"error": "busy", "detail": "the write lock is taken"}'
        else:
            self.send_response(200)
            body = b'{"ok": true}'
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[tuple[str, type[Flaky]]]:
    class Handler(Flaky):
        seen: list[str] = []

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", Handler
    server.shutdown()
    server.server_close()


def test_503_is_retried_until_the_server_answers_or_retries_run_out(flaky) -> None:
    url, handler = flaky
    handler.busy = 2
    with Client(url, backoff=0.01) as boxal:
        assert boxal.health() == {"ok": True}
    assert len(handler.seen) == 3
    handler.busy, handler.seen[:] = 5, []
    with Client(url, retries=2, backoff=0.01) as boxal, pytest.raises(BoxalError) as busy:
        boxal.health()
    assert (busy.value.status, busy.value.error, busy.value.detail) == (
        503,
        "busy",
        "the write lock is taken",
    )
    assert len(handler.seen) == 3  # the first try and two retries


def test_a_dropped_connection_is_retried_only_where_a_second_send_is_harmless(flaky) -> None:
    url, handler = flaky
    handler.drop = 1
    with Client(url, backoff=0.01) as boxal:
        assert boxal.answer(1, [{"query_id": 1, "action": "background"}]) == {"ok": True}  # idempotent
        assert handler.seen == ["POST /v1/projects/1/labels"] * 2
        handler.drop, handler.seen[:] = 1, []
        with pytest.raises(httpx.HTTPError):
            boxal.lease(1, k=1, annotator="ana")  # it may have leased: not sent twice
        assert handler.seen == ["POST /v1/projects/1/queries"]


def test_connection_refused_is_retried_then_raised() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once this block ends: nothing listens there
    with (
        Client(f"http://127.0.0.1:{port}", retries=2, backoff=0.01) as boxal,
        pytest.raises(httpx.ConnectError),
    ):
        boxal.health()
