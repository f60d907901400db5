from __future__ import annotations

import io
from pathlib import Path

from PIL import Image as PILImage

from app.main import create_app
from tests.conftest import auth
from tests.factories import create_project, db_state, write_image


def test_register_server_files_reads_sizes_and_streams_content(client, tmp_path: Path) -> None:
    project = create_project(client)
    a = write_image(tmp_path / "pool" / "a.png", 40, 30)
    b = write_image(tmp_path / "test" / "b.png", 50, 20)
    response = client.post(
        f"/v1/projects/{project['id']}/images",
        json={
            "images": [{"uri": f"file://{a}"}, {"uri": f"file://{b}", "split": "test", "external_id": "B"}]
        },
    )
    assert response.status_code == 201, response.text
    first, second = response.json()["images"]
    assert (first["width"], first["height"], first["external_id"], first["split"]) == (40, 30, "a", "pool")
    assert (second["width"], second["external_id"], second["split"]) == (50, "B", "test")

    content = client.get(first["url"])
    assert content.status_code == 200 and content.content == a.read_bytes()
    detail = client.get(f"/v1/projects/{project['id']}/images/{second['id']}").json()
    assert detail["boxes"] == []
    listing = client.get(f"/v1/projects/{project['id']}/images", params={"split": "test"}).json()
    assert [im["external_id"] for im in listing["items"]] == ["B"]


def test_multipart_upload_is_stored_in_the_data_dir(client, settings, tmp_path: Path) -> None:
    project = create_project(client)
    buffer = io.BytesIO()
    PILImage.new("RGB", (33, 22), (1, 2, 3)).save(buffer, format="JPEG")
    response = client.post(
        f"/v1/projects/{project['id']}/images",
        files=[("files", ("photo.jpg", buffer.getvalue(), "image/jpeg"))],
        data={"split": "pool"},
    )
    assert response.status_code == 201, response.text
    image = response.json()["images"][0]
    assert (image["width"], image["height"], image["external_id"]) == (33, 22, "photo")
    stored = list((settings.uploads_dir / str(project["id"])).iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".jpg"
    assert client.get(image["url"]).content == buffer.getvalue()


def test_bad_image_requests_are_rejected_and_change_nothing(
    client, database, settings, tmp_path: Path
) -> None:
    project = create_project(client)
    url = f"/v1/projects/{project['id']}/images"
    good = write_image(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("not an image")
    outside = Path("/etc/hostname")
    (tmp_path / "link.png").symlink_to("/etc/nonexistent.png")  # inside a root, leading out of it
    client.post(url, json={"images": [{"uri": f"file://{good}"}]})
    before = db_state(database)
    cases = [
        ({"images": [{"uri": f"file://{tmp_path}/missing.png"}]}, 404, "does not exist"),
        ({"images": [{"uri": f"file://{outside}"}]}, 403, "outside the allowed image roots"),
        # outside the roots is 403 whether it exists or not: the answer tells nothing of the disk
        ({"images": [{"uri": f"file://{tmp_path}/../../etc/passwd"}]}, 422, "'..' segment"),
        ({"images": [{"uri": f"file://{tmp_path}/a/../b.png"}]}, 422, "'..' segment"),  # even inside a root
        ({"images": [{"uri": "file:///etc/nonexistent.png"}]}, 403, "outside the allowed image roots"),
        ({"images": [{"uri": "file:///root/.bashrc"}]}, 403, "outside the allowed image roots"),
        ({"images": [{"uri": f"file://{tmp_path}/link.png"}]}, 403, "outside the allowed image roots"),
        ({"images": [{"uri": f"file://{tmp_path}/notes.txt"}]}, 422, "not a readable image"),
        ({"images": [{"uri": "http://example.com/a.png"}]}, 403, "outside the allowed URL prefixes"),
        ({"images": [{"uri": "ftp://example.com/a.png"}]}, 422, "only file://"),
        ({"images": [{"uri": "file:///a.png"}], "prefix": "/x"}, 422, "either images or prefix"),
        ({"images": [{"uri": f"file://{good}", "split": "train"}]}, 422, "images[0].split"),
        ({"images": [{"uri": f"file://{good}"}]}, 409, "already registered"),
        ({"images": []}, 422, "images"),
    ]
    for body, status, words in cases:
        response = client.post(url, json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["detail"], response.json()
    assert client.get(f"/v1/projects/{project['id']}/images/999").status_code == 404
    assert (
        client.post("/v1/projects/999/images", json={"images": [{"uri": f"file://{good}"}]}).status_code
        == 404
    )
    junk = client.post(url, files=[("files", ("a.png", b"garbage", "image/png"))])
    assert junk.status_code == 422 and "not a readable image" in junk.json()["detail"]
    assert db_state(database) == before
    assert not list(settings.uploads_dir.glob("*/*"))


def test_upload_over_the_size_limit_is_413(settings, database, admin_token: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    small = settings.model_copy(update={"max_upload_bytes": 1000})
    with TestClient(create_app(small, database=database), headers=auth(admin_token)) as client:
        project = create_project(client)
        before = db_state(database)
        buffer = io.BytesIO()
        PILImage.effect_noise((200, 200), 50).convert("RGB").save(buffer, format="PNG")
        response = client.post(
            f"/v1/projects/{project['id']}/images",
            files=[("files", ("big.png", buffer.getvalue(), "image/png"))],
        )
        assert response.status_code == 413, response.text
        assert "upload limit of 1000 bytes" in response.json()["detail"]
        assert db_state(database) == before

    tiny_body = settings.model_copy(update={"max_body_bytes": 2000})
    with TestClient(create_app(tiny_body, database=database), headers=auth(admin_token)) as client:
        response = client.post("/v1/projects", json={"name": "x" * 3000, "classes": ["a"]})
        assert response.status_code == 413 and "over the limit of 2000 bytes" in response.json()["detail"]
