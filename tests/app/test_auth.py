"""Every endpoint with no token, a wrong-scope token and a right one (tokens and roles: DESIGN and
docs/SECURITY.md). The route table is read from the app, so an endpoint added later without a rule here
fails this test."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.auth.service import (
    ADMIN_TOKEN_FILE,
    authenticate,
    create_token,
    ensure_admin_token,
    revoke_token,
)
from app.main import create_app
from app.settings import Settings
from tests.conftest import auth
from tests.factories import coco_for, create_project, import_coco, register_images, seed_pool

PUBLIC = {("GET", "/health"), ("GET", "/label-studio/health"), ("GET", "/label-studio/")}
ANNOTATOR = {  # what an annotator token may do in its own projects
    ("GET", "/v1/projects"),
    ("GET", "/v1/projects/{project_id}"),
    ("GET", "/v1/projects/{project_id}/images"),
    ("GET", "/v1/projects/{project_id}/images/{image_id}"),
    ("GET", "/v1/projects/{project_id}/images/{image_id}/content"),
    ("POST", "/v1/projects/{project_id}/queries"),
    ("DELETE", "/v1/projects/{project_id}/queries/{query_id}"),
    ("POST", "/v1/projects/{project_id}/labels"),
    ("GET", "/v1/projects/{project_id}/rounds"),
    ("GET", "/v1/projects/{project_id}/curve"),
    ("GET", "/v1/jobs/{job_id}"),
}
ADMIN = {  # admin tokens only
    ("POST", "/v1/projects"),
    ("PATCH", "/v1/projects/{project_id}"),
    ("POST", "/v1/projects/{project_id}/images"),
    ("POST", "/v1/projects/{project_id}/imports"),
    ("GET", "/v1/projects/{project_id}/labels"),
    ("POST", "/v1/projects/{project_id}/rounds"),
    ("GET", "/v1/projects/{project_id}/export"),
    ("GET", "/metrics"),
}
LABEL_STUDIO = {  # any token; the Label Studio project in the body decides the scope (test_label_studio.py)
    ("POST", "/label-studio/setup"),
    ("POST", "/label-studio/predict"),
    ("POST", "/label-studio/webhook"),
    ("POST", "/label-studio/train"),
}
STATIC = ("/docs", "/redoc", "/openapi", "/ui")  # static pages and the schema: no data behind them


@pytest.fixture
def world(client, database, tmp_path: Path):
    """Project A with images, a leased query and a round job; project B; an annotator token for each."""
    a = create_project(client, name="a")
    b = create_project(client, name="b")
    images = register_images(client, a["id"], tmp_path / "a", 2)
    import_coco(client, a["id"], coco_for(images[:1], {"img00000": [([1, 1, 9, 9], "cat")]}, ["cat", "dog"]))
    seed_pool(database, a["id"], [images[1]["id"]], 3)
    job = client.post(f"/v1/projects/{a['id']}/rounds").json()["job_id"]
    with database.transaction() as session:
        _, in_a = create_token(session, "ann", "annotator", [a["id"]])
        _, in_b = create_token(session, "bob", "annotator", [b["id"]])
    query = client.post(
        f"/v1/projects/{a['id']}/queries", headers=auth(in_a), json={"k": 1, "annotator": "x"}
    ).json()["queries"][0]
    return {"a": a, "b": b, "image": images[0], "query": query, "job": job, "in_a": in_a, "in_b": in_b}


def _routes(app) -> list[tuple[str, str]]:
    """Every endpoint of the API, as its OpenAPI document lists them."""
    return sorted(
        (method.upper(), path)
        for path, item in app.openapi()["paths"].items()
        for method in item
        if not path.startswith(STATIC)
    )


def _call(client, method: str, path: str, world: dict, headers: dict[str, str] | None = None):
    """One request on project A's objects; ``headers`` None keeps the client's own (admin) token."""
    url = (
        path.replace("{project_id}", str(world["a"]["id"]))
        .replace("{image_id}", str(world["image"]["id"]))
        .replace("{query_id}", str(world["query"]["query_id"]))
        .replace("{job_id}", world["job"])
    )
    return client.request(method, url, headers=headers, json={} if method in ("POST", "PATCH") else None)


def test_every_endpoint_has_a_rule() -> None:
    app = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    assert set(_routes(app)) == PUBLIC | ANNOTATOR | ADMIN | LABEL_STUDIO
    assert not (PUBLIC & ANNOTATOR or ANNOTATOR & ADMIN or PUBLIC & ADMIN or LABEL_STUDIO & (PUBLIC | ADMIN))


def test_no_token_is_401_everywhere_but_health(client, world) -> None:
    for method, path in _routes(client.app):
        response = _call(client, method, path, world, {"Authorization": ""})
        if (method, path) in PUBLIC:
            assert response.status_code == 200
            continue
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["error"] == "unauthorized"
    bad = client.get("/v1/projects", headers=auth("bxl_not-a-real-token"))
    assert bad.status_code == 401 and bad.json()["detail"] == "invalid or revoked token"


def test_a_token_outside_its_scope_learns_nothing(client, world) -> None:
    for method, path in _routes(client.app):
        if (method, path) in PUBLIC | LABEL_STUDIO:
            continue
        response = _call(client, method, path, world, auth(world["in_b"]))
        if (method, path) == ("GET", "/v1/projects"):
            assert [p["id"] for p in response.json()["items"]] == [world["b"]["id"]]
        elif (method, path) in ANNOTATOR:
            assert response.status_code == 404, (method, path, response.text)
            if "{project_id}" in path:  # worded exactly as for a project that does not exist
                assert response.json()["detail"] == f"project {world['a']['id']} does not exist"
            else:
                assert response.json()["detail"] == f"job {world['job']} does not exist"
        else:
            assert response.status_code == 403, (method, path, response.text)
    missing = client.get("/v1/projects/999", headers=auth(world["in_b"]))
    assert missing.status_code == 404 and missing.json()["detail"] == "project 999 does not exist"


def test_the_right_token_gets_through(client, world) -> None:
    for method, path in _routes(client.app):
        if (method, path) in PUBLIC:
            continue
        headers = auth(world["in_a"]) if (method, path) in ANNOTATOR else None  # None: the admin token
        response = _call(client, method, path, world, headers)
        assert response.status_code not in (401, 403), (method, path, response.text)
        assert response.status_code < 500, (method, path, response.text)
    for method, path in ADMIN - {("POST", "/v1/projects"), ("GET", "/metrics")}:
        assert _call(client, method, path, world, auth(world["in_a"])).status_code == 403, (method, path)
    assert client.post("/v1/projects", headers=auth(world["in_a"]), json={}).status_code == 403
    assert client.get("/metrics", headers=auth(world["in_a"])).status_code == 403


def test_annotators_work_under_their_own_name_and_only_their_own_leases(client, world) -> None:
    a = world["a"]["id"]
    admin_lease = client.post(f"/v1/projects/{a}/queries", json={"k": 1, "annotator": "oracle"}).json()[
        "queries"
    ]
    foreign = client.post(
        f"/v1/projects/{a}/labels",
        headers=auth(world["in_a"]),
        json={"labels": [{"query_id": admin_lease[0]["query_id"], "action": "background"}]},
    )
    assert foreign.status_code == 403 and "another annotator" in foreign.json()["detail"]
    released = client.delete(
        f"/v1/projects/{a}/queries/{admin_lease[0]['query_id']}", headers=auth(world["in_a"])
    )
    assert released.status_code == 403
    own = client.post(
        f"/v1/projects/{a}/labels",
        headers=auth(world["in_a"]),
        json={"labels": [{"query_id": world["query"]["query_id"], "action": "background"}]},
    )
    assert own.status_code == 200
    logged = client.get(f"/v1/projects/{a}/labels").json()["items"]
    assert [e["annotator"] for e in logged] == ["ann"]  # the token's name, not the "x" it claimed


def test_revoked_tokens_are_refused(client, database, world) -> None:
    assert client.get("/v1/projects", headers=auth(world["in_a"])).status_code == 200
    with database.transaction() as session:
        row = next(
            t
            for t in __import__("app.auth.service", fromlist=["list_tokens"]).list_tokens(session)
            if t.name == "ann"
        )
        revoke_token(session, str(row.id))
    assert client.get("/v1/projects", headers=auth(world["in_a"])).status_code == 401


def test_first_start_writes_an_owner_only_admin_token(settings: Settings, database) -> None:
    with database.transaction() as session:
        origin = ensure_admin_token(session, settings)
    path = settings.resolved_data_dir / ADMIN_TOKEN_FILE
    assert str(path) in origin and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    token = path.read_text().strip()
    with database.transaction() as session:
        assert ensure_admin_token(session, settings) == origin  # idempotent: the same token on restart
        assert authenticate(session, token).is_admin
    with TestClient(create_app(settings, database=database)) as raw:
        assert raw.get("/v1/projects", headers=auth(token)).status_code == 200


def test_the_admin_token_can_come_from_the_environment(settings: Settings, database) -> None:
    configured = settings.model_copy(update={"admin_token": "bxl_from-the-environment-123"})
    with database.transaction() as session:
        assert ensure_admin_token(session, configured) == "BOXAL_ADMIN_TOKEN"
        assert authenticate(session, "bxl_from-the-environment-123").is_admin
    assert not (settings.resolved_data_dir / ADMIN_TOKEN_FILE).exists()
    with pytest.raises(ValueError, match="too short"), database.transaction() as session:
        ensure_admin_token(session, settings.model_copy(update={"admin_token": "short"}))
