"""Images kept on object storage and web servers: a real S3 API on loopback (moto's standalone server) and
a real HTTP server serving a directory; registered from a prefix, leased, answered and exported, their
bytes read through the cache; missing and unreachable objects reported per image, 404 for a missing object
and 502/504 for a store that fails, URIs outside the allowed prefixes refused, and a web server under an
allowed prefix unable to send boxal anywhere else: a redirect out of the prefixes is not followed, and a
listing's links out of its prefix are skipped and reported (a second loopback server, the forbidden one,
receives nothing)."""

from __future__ import annotations

import io
import os
import socket
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image as PILImage

from app.settings import Settings
from tests.factories import coco_for, create_project, import_coco, write_image


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on loopback with a bucket 'cells' holding pool/img{0,1,2}.png and notes.txt."""
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    for key, value in (
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        monkeypatch.setenv(key, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=endpoint)
    client.create_bucket(Bucket="cells")
    for i in range(3):
        buffer = io.BytesIO()
        PILImage.new("RGB", (64 + i, 48), (10 * i, 80, 40)).save(buffer, "PNG")
        client.put_object(Bucket="cells", Key=f"pool/img{i}.png", Body=buffer.getvalue())
    client.put_object(Bucket="cells", Key="pool/notes.txt", Body=b"not an image")
    client.put_object(Bucket="cells", Key="pool/broken.png", Body=b"not a png")
    yield endpoint
    server.stop()


def _app_client(settings: Settings, database, token: str):
    from fastapi.testclient import TestClient

    from app.main import create_app
    from tests.conftest import auth

    return TestClient(create_app(settings, database=database), headers=auth(token))


def test_s3_prefix_registers_leases_answers_and_exports(
    settings, database, admin_token, s3, tmp_path
) -> None:
    settings = settings.model_copy(
        update={"image_roots": [*settings.image_roots, "s3://cells/pool/"], "s3_endpoint_url": s3}
    )
    with _app_client(settings, database, admin_token) as client:
        pid = create_project(client, classes=["cat", "dog"])["id"]
        response = client.post(
            f"/v1/projects/{pid}/images", json={"prefix": "s3://cells/pool/", "split": "pool"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert [(im["external_id"], im["width"]) for im in body["images"]] == [
            ("img0", 64),
            ("img1", 65),
            ("img2", 66),
        ]
        assert [s["item"] for s in body["skipped"]] == ["s3://cells/pool/broken.png"]  # reported, not fatal
        assert "not a readable image" in body["skipped"][0]["reason"]
        images = body["images"]
        preds = coco_for(images[1:2], {"img1": [([2, 2, 30, 30], "dog")]}, ["cat", "dog"], scores=True)
        import_coco(client, pid, preds, kind="predictions")
        query = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "ana"}).json()[
            "queries"
        ][0]
        content = client.get(query["image"]["url"])
        assert content.status_code == 200 and content.content[:4] == b"\x89PNG"
        answer = {"query_id": query["query_id"], "action": "adjust", "bbox": [3, 3, 28, 28], "label": "dog"}
        assert client.post(f"/v1/projects/{pid}/labels", json={"labels": [answer]}).status_code == 200
        coco = client.get(f"/v1/projects/{pid}/export").json()
        assert [a["bbox"] for a in coco["annotations"]] == [[3, 3, 25, 25]]
        archive = client.get(f"/v1/projects/{pid}/export", params={"format": "yolo", "images": "true"})
        names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
        assert "train/images/img1.png" in names and "train/labels/img1.txt" in names
        # an object deleted from the bucket: served from the cache if read before, else 404 naming it
        import boto3

        boto3.client("s3", endpoint_url=s3).delete_object(Bucket="cells", Key="pool/img2.png")
        gone = client.get(f"/v1/projects/{pid}/images/{images[2]['id']}/content")
        assert gone.status_code == 200  # the registration read it into the cache
        listed = client.post(
            f"/v1/projects/{pid}/images", json={"images": [{"uri": "s3://cells/pool/img9.png"}]}
        )
        assert (
            listed.status_code == 404
            and "s3://cells/pool/img9.png: no such object" in listed.json()["detail"]
        )
        outside = client.post(f"/v1/projects/{pid}/images", json={"prefix": "s3://other/pool/"})
        assert outside.status_code == 403 and "outside the allowed URL prefixes" in outside.json()["detail"]
        sibling = client.post(
            f"/v1/projects/{pid}/images", json={"images": [{"uri": "s3://cells/pool-evil/a.png"}]}
        )
        assert sibling.status_code == 403  # a prefix is a folder: pool/ does not admit pool-evil/
        for bare in ({"images": [{"uri": "s3://"}]}, {"prefix": "s3://"}):  # was a 500 (IndexError)
            assert client.post(f"/v1/projects/{pid}/images", json=bare).status_code == 403
        bare_import = client.post(f"/v1/projects/{pid}/imports", json={"format": "voc", "path": "s3://"})
        assert bare_import.status_code == 403
        for sneaky in ("s3://cells/pool/../secret.png", "s3://cells/pool/%2e%2e/secret.png"):
            dots = client.post(f"/v1/projects/{pid}/images", json={"images": [{"uri": sneaky}]})
            assert dots.status_code == 422 and "'..' segment" in dots.json()["detail"]
        again = client.post(f"/v1/projects/{pid}/images", json={"prefix": "s3://cells/pool", "split": "test"})
        assert again.status_code == 409  # the prefix without its slash is the same folder: already registered


def test_http_images_register_serve_and_fail_clearly(settings, database, admin_token, web) -> None:
    closed = f"http://127.0.0.1:{_free_port()}/pics/"  # nothing listens there
    roots = [*settings.image_roots, web, closed]
    settings = settings.model_copy(update={"image_roots": roots, "remote_timeout_s": 5.0})
    with _app_client(settings, database, admin_token) as client:
        pid = create_project(client, classes=["cat", "dog"])["id"]
        response = client.post(f"/v1/projects/{pid}/images", json={"prefix": web})
        assert response.status_code == 201, response.text
        images = response.json()["images"]
        assert [(im["external_id"], im["height"]) for im in images] == [("p0", 30), ("p1", 31)]
        import_coco(client, pid, coco_for(images[:1], {"p0": [([1, 1, 20, 20], "cat")]}, ["cat", "dog"]))
        preds = coco_for(images[1:], {"p1": [([2, 2, 30, 25], "dog")]}, ["cat", "dog"], scores=True)
        import_coco(client, pid, preds, kind="predictions")
        query = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "ana"}).json()[
            "queries"
        ][0]
        assert client.get(query["image"]["url"]).content[:4] == b"\x89PNG"
        answer = {"query_id": query["query_id"], "action": "background"}
        assert client.post(f"/v1/projects/{pid}/labels", json={"labels": [answer]}).status_code == 200
        assert len(client.get(f"/v1/projects/{pid}/export").json()["annotations"]) == 1
        missing = client.post(f"/v1/projects/{pid}/images", json={"images": [{"uri": f"{web}nope.png"}]})
        assert missing.status_code == 404 and "no such object" in missing.json()["detail"]
        down = client.post(f"/v1/projects/{pid}/images", json={"images": [{"uri": f"{closed}a.png"}]})
        assert down.status_code in (502, 504) and "could not be read" in down.json()["detail"]
        # registered with its size given, never read: /content goes upstream and says why it failed
        late = client.post(
            f"/v1/projects/{pid}/images",
            json={"images": [{"uri": f"{closed}b.png", "width": 10, "height": 10}]},
        ).json()["images"][0]
        content = client.get(f"/v1/projects/{pid}/images/{late['id']}/content")
        assert content.status_code == 502 and content.json()["error"] == "bad_gateway"


def _upload(endpoint: str, prefix: str, archive: bytes) -> None:
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint)
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        for name in zipped.namelist():
            client.put_object(Bucket="cells", Key=f"{prefix}{name}", Body=zipped.read(name))


class _Recorder(BaseHTTPRequestHandler):
    """A loopback web server that records every request it gets: ``routes`` maps a path to (status,
    headers, body); anything else is 404."""

    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[str] = []

    def _answer(self, body: bool) -> None:
        self.seen.append(f"{self.command} {self.path}")
        status, headers, content = self.routes.get(self.path.split("?")[0], (404, {}, b""))
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(content)

    def do_GET(self) -> None:
        self._answer(True)

    def do_HEAD(self) -> None:
        self._answer(False)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def two_servers() -> Iterator[tuple[str, type[_Recorder], str, type[_Recorder]]]:
    """Server A (its /allowed/ is an allowed prefix) and server B (nothing of it is allowed)."""
    made = []
    for _ in range(2):
        handler = type("Recorder", (_Recorder,), {"routes": {}, "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        made.append((server, handler))
    (a, handler_a), (b, handler_b) = made
    yield (
        f"http://127.0.0.1:{a.server_address[1]}",
        handler_a,
        f"http://127.0.0.1:{b.server_address[1]}",
        handler_b,
    )
    for server, _ in made:
        server.shutdown()
        server.server_close()


def test_a_redirect_or_a_link_out_of_the_allowed_prefixes_reaches_nothing(
    settings, database, admin_token, two_servers, tmp_path
) -> None:
    url_a, a, url_b, b = two_servers
    png = io.BytesIO()
    PILImage.new("RGB", (20, 10)).save(png, "PNG")
    b.routes["/internal/img.png"] = (200, {"Content-Type": "image/png"}, png.getvalue())
    a.routes.update(
        {
            "/allowed/ok.png": (200, {"Content-Type": "image/png"}, png.getvalue()),
            "/allowed/away.png": (302, {"Location": f"{url_b}/internal/img.png"}, b""),
            "/allowed/relative.png": (302, {"Location": "/outside/img.png"}, b""),  # same host, out of it
            "/allowed/hop.png": (301, {"Location": f"{url_a}/allowed/ok.png"}, b""),  # stays inside: followed
            "/outside/img.png": (200, {"Content-Type": "image/png"}, png.getvalue()),
            "/allowed/list/": (
                200,
                {"Content-Type": "text/html"},
                b'<a href="ok.png">ok</a> <a href="../outside.png">up</a> <a href="../../outside/">dir</a>'
                b'<a href="' + f"{url_b}/internal/img.png".encode() + b'">b</a>',
            ),
            "/allowed/list/ok.png": (200, {"Content-Type": "image/png"}, png.getvalue()),
        }
    )
    allowed = f"{url_a}/allowed/"
    settings = settings.model_copy(update={"image_roots": [*settings.image_roots, allowed]})
    with _app_client(settings, database, admin_token) as client:
        pid = create_project(client)["id"]
        before = list(a.seen)
        for name in ("away.png", "relative.png"):
            response = client.post(f"/v1/projects/{pid}/images", json={"images": [{"uri": allowed + name}]})
            assert response.status_code == 403, response.text
            assert "outside the allowed URL prefixes; not followed" in response.json()["detail"]
        assert not [r for r in a.seen[len(before) :] if "/outside/" in r]  # the hop was never made
        hop = client.post(f"/v1/projects/{pid}/images", json={"images": [{"uri": allowed + "hop.png"}]})
        assert hop.status_code == 201, hop.text  # a redirect that stays under the prefix is followed
        listed = client.post(
            f"/v1/projects/{pid}/images", json={"prefix": allowed + "list/", "split": "test"}
        )
        assert listed.status_code == 201, listed.text
        assert [im["external_id"] for im in listed.json()["images"]] == ["ok"]
        reasons = {s["item"]: s["reason"] for s in listed.json()["skipped"]}
        assert any(item.endswith("outside.png") for item in reasons), reasons
        assert all("outside" in reason and "not read" in reason for reason in reasons.values())
        served = [i for i in client.get(f"/v1/projects/{pid}/images").json()["items"]]
        assert len(served) == 2
    assert b.seen == []  # server B got no request at all: no HEAD, no GET
    assert not [r for r in a.seen if "/outside" in r], a.seen


def test_voc_and_yolo_import_from_a_bucket_prefix(settings, database, admin_token, s3) -> None:
    """An export put on object storage imports back from there: annotation files read over S3, images
    registered where they are; an image that cannot be read is a line of the report."""
    settings = settings.model_copy(
        update={"image_roots": [*settings.image_roots, "s3://cells/"], "s3_endpoint_url": s3}
    )
    with _app_client(settings, database, admin_token) as client:
        pid = create_project(client, classes=["cat", "dog"])["id"]
        images = client.post(f"/v1/projects/{pid}/images", json={"prefix": "s3://cells/pool/"}).json()[
            "images"
        ]
        truth = {"img0": [([1, 2, 20, 30], "cat")], "img1": [([4, 4, 40, 40], "dog"), ([0, 0, 9, 9], "cat")]}
        import_coco(client, pid, coco_for(images[:2], truth, ["cat", "dog"]))
        expected = sorted(
            (a["bbox"], a["category_id"])
            for a in client.get(f"/v1/projects/{pid}/export").json()["annotations"]
        )
        for fmt in ("voc", "yolo"):
            _upload(
                s3,
                f"{fmt}/",
                client.get(f"/v1/projects/{pid}/export", params={"format": fmt, "images": "true"}).content,
            )
        import boto3

        boto3.client("s3", endpoint_url=s3).put_object(
            Bucket="cells", Key="yolo/train/images/bad.png", Body=b"not a png"
        )
        for fmt, options in (("voc", {"image_set": "trainval"}), ("yolo", {"subsets": ["train"]})):
            again = create_project(client, name=f"from-{fmt}", classes=["cat", "dog"])["id"]
            body = {"format": fmt, "path": f"s3://cells/{fmt}/", "register_split": "pool", **options}
            response = client.post(f"/v1/projects/{again}/imports", json=body)
            assert response.status_code == 200, response.text
            report = response.json()
            assert report["images_registered"] == 2 and report["images_labeled"] == 2, report
            got = sorted(
                (a["bbox"], a["category_id"])
                for a in client.get(f"/v1/projects/{again}/export").json()["annotations"]
            )
            assert len(got) == len(expected) and all(
                c1 == c2 and max(abs(x - y) for x, y in zip(b1, b2, strict=True)) < 0.01
                for (b1, c1), (b2, c2) in zip(got, expected, strict=True)
            ), (fmt, got, expected)
            stored = client.get(f"/v1/projects/{again}/images").json()["items"][0]
            assert (
                client.get(stored["url"]).status_code == 200
            )  # the image stays on S3, read through the cache
            if fmt == "yolo":
                assert [s["item"] for s in report["skipped"]] == ["image bad (bad.png)"]
                assert "not a readable image" in report["skipped"][0]["reason"]


def test_the_cache_stays_within_its_size_keeping_the_recently_used(settings, web, tmp_path) -> None:
    from app.images import remote

    size = len((tmp_path / "site" / "pics" / "p0.png").read_bytes())
    settings = settings.model_copy(
        update={"image_roots": [web], "data_dir": tmp_path / "data", "image_cache_bytes": int(2.5 * size)}
    )
    first = remote.fetch(f"{web}p0.png", settings)
    second = remote.fetch(f"{web}p1.png", settings)
    assert first.read_bytes() == (tmp_path / "site" / "pics" / "p0.png").read_bytes()
    for i in range(2, 4):
        write_image(tmp_path / "site" / "pics" / f"p{i}.png", 40, 30)
    remote.fetch(f"{web}p0.png", settings)  # used again: the most recent
    remote.fetch(f"{web}p2.png", settings)
    remote.fetch(f"{web}p3.png", settings)
    cached = list(settings.image_cache_dir.iterdir())
    assert sum(p.stat().st_size for p in cached) <= 2.5 * size
    assert not second.exists()  # the least recently used went first


def test_the_cache_counts_through_files_other_fetches_rename_or_evict(
    settings, web, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread's fetch renames its dot-named temporary file, or evicts a file, between this
    thread's listing of the cache and its stat of an entry: the count skips both and the fetch
    succeeds (the interleaving that once made a bucket import fail with FileNotFoundError)."""
    from app.images import cache, remote

    settings = settings.model_copy(
        update={"image_roots": [web], "data_dir": tmp_path / "data", "image_cache_bytes": 10**9}
    )
    folder = settings.image_cache_dir
    folder.mkdir(parents=True)
    (folder / "kept.png").write_bytes(b"k" * 100)
    (folder / "evicted.png").write_bytes(b"e" * 100)
    (folder / ".in-flight.png.1.2").write_bytes(b"t" * 100)
    real_scandir = os.scandir

    def racing_scandir(path):
        entries = list(real_scandir(path))  # listed; then the other thread acts before any stat
        for name in ("evicted.png", ".in-flight.png.1.2"):
            (Path(path) / name).unlink(missing_ok=True)
        return iter(entries)

    monkeypatch.setattr(cache.os, "scandir", racing_scandir)
    fetched = remote.fetch(f"{web}p0.png", settings)  # first fetch into this folder: counts it whole
    assert fetched.read_bytes() == (tmp_path / "site" / "pics" / "p0.png").read_bytes()
    assert cache._cache_bytes[folder] == 100 + fetched.stat().st_size
