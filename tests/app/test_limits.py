"""Every configured limit answers 413 or 422 with a message naming it, and changes nothing."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from PIL import Image as PILImage

from app.main import create_app
from tests.conftest import auth
from tests.factories import coco_for, create_project, db_state, register_images, write_image


def _client(settings, database, admin_token, **limits) -> TestClient:
    return TestClient(
        create_app(settings.model_copy(update=limits), database=database), headers=auth(admin_token)
    )


def test_k_per_lease_call(settings, database, admin_token, tmp_path: Path) -> None:
    with _client(settings, database, admin_token, max_k=5) as client:
        project = create_project(client)
        register_images(client, project["id"], tmp_path / "pool", 1)
        before = db_state(database)
        response = client.post(f"/v1/projects/{project['id']}/queries", json={"k": 6, "annotator": "a"})
        assert response.status_code == 422 and "at most 5 queries per lease call" in response.json()["detail"]
        assert db_state(database) == before


def test_a_project_k_is_bounded_by_the_servers_limit_when_written(
    settings, database, admin_token, tmp_path: Path
) -> None:
    with _client(settings, database, admin_token, max_k=5) as client:
        refused = client.post("/v1/projects", json={"name": "big", "classes": ["a"], "settings": {"k": 6}})
        assert refused.status_code == 422 and "BOXAL_MAX_K" in refused.json()["detail"]
        assert "settings.k: at most 5" in refused.json()["detail"]
        project = create_project(client)
        register_images(client, project["id"], tmp_path / "pool", 1)
        before = db_state(database)
        patched = client.patch(f"/v1/projects/{project['id']}", json={"settings": {"k": 500}})
        assert patched.status_code == 422 and "BOXAL_MAX_K" in patched.json()["detail"]
        assert db_state(database) == before
        assert client.patch(f"/v1/projects/{project['id']}", json={"settings": {"k": 5.0}}).status_code == 200
        # a lease naming no k uses the project's, which the server now guarantees it can serve
        leased = client.post(f"/v1/projects/{project['id']}/queries", json={"annotator": "adm"})
        assert leased.status_code == 200, leased.text
        schema = client.get("/openapi.json").json()["components"]["schemas"]
        for name in ("ProjectSettings", "ProjectSettingsPatch", "LeaseIn"):
            k = schema[name]["properties"]["k"]
            assert 5 in [option.get("maximum") for option in k.get("anyOf", [k])], name
    # a k written before the server's limit was lowered still leases (capped), and other settings change
    with _client(settings, database, admin_token, max_k=3) as client:
        leased = client.post(f"/v1/projects/{project['id']}/queries", json={"annotator": "adm2"})
        assert leased.status_code == 200, leased.text
        other = client.patch(f"/v1/projects/{project['id']}", json={"settings": {"lr": 0.01}})
        assert other.status_code == 200, other.text


def test_integral_numbers_are_integers_as_json_schema_says(client, tmp_path: Path) -> None:
    project = create_project(client)
    register_images(client, project["id"], tmp_path / "pool", 2)
    pid = project["id"]
    assert client.post(f"/v1/projects/{pid}/queries", json={"k": 3.0, "annotator": "a"}).status_code == 200
    patched = client.patch(f"/v1/projects/{pid}", json={"settings": {"round_size": 15002.0}})
    assert patched.status_code == 200 and patched.json()["settings"]["round_size"] == 15002
    for bad in (3.5, True, "3"):
        response = client.post(f"/v1/projects/{pid}/queries", json={"k": bad, "annotator": "a"})
        assert response.status_code == 422 and "k" in response.json()["detail"], bad


def test_import_size(settings, database, admin_token, tmp_path: Path) -> None:
    with _client(settings, database, admin_token, max_import_items=3) as client:
        project = create_project(client)
        images = register_images(client, project["id"], tmp_path / "pool", 2)
        data = coco_for(images, {"img00000": [([1, 1, 5, 5], "cat"), ([6, 6, 9, 9], "dog")]}, ["cat", "dog"])
        before = db_state(database)
        response = client.post(f"/v1/projects/{project['id']}/imports", json={"format": "coco", "data": data})
        assert response.status_code == 413 and "the limit is 3" in response.json()["detail"]
        assert db_state(database) == before


def test_decompression_bombs_are_refused(settings, database, admin_token, tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    PILImage.new("L", (4000, 3000)).save(bomb, optimize=True)  # 12 Mpx that compress to a few kB
    assert bomb.stat().st_size < 100_000
    with _client(settings, database, admin_token, max_image_pixels=1_000_000) as client:
        project = create_project(client)
        before = db_state(database)
        listed = client.post(
            f"/v1/projects/{project['id']}/images", json={"images": [{"uri": f"file://{bomb}"}]}
        )
        assert listed.status_code == 422 and "decompression-bomb guard" in listed.json()["detail"]
        uploaded = client.post(
            f"/v1/projects/{project['id']}/images",
            files=[("files", ("bomb.png", bomb.read_bytes(), "image/png"))],
        )
        assert uploaded.status_code == 422 and "decompression-bomb guard" in uploaded.json()["detail"]
        assert db_state(database) == before
        fine = write_image(tmp_path / "fine.png", 100, 100)
        assert (
            client.post(
                f"/v1/projects/{project['id']}/images", json={"images": [{"uri": f"file://{fine}"}]}
            ).status_code
            == 201
        )
