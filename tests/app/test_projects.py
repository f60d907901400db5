from __future__ import annotations

from tests.factories import create_project, db_state


def test_create_read_update_and_list(client) -> None:
    project = create_project(client, name="voc", classes=["person", "car"], strategy="entropy", round_size=50)
    assert project["settings"]["strategy"] == "entropy"
    assert project["settings"]["lambda_d"] == 0.5  # the paper's default
    assert project["round"] == 0 and project["serving_round"] == 0

    got = client.get(f"/v1/projects/{project['id']}").json()
    assert got == project

    changed = client.patch(
        f"/v1/projects/{project['id']}", json={"settings": {"lambda_d": 0.25}, "add_classes": ["bike"]}
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["settings"]["lambda_d"] == 0.25
    assert changed.json()["settings"]["strategy"] == "entropy"
    assert changed.json()["classes"] == ["person", "car", "bike"]

    create_project(client, name="other")
    page = client.get("/v1/projects", params={"limit": 1}).json()
    assert len(page["items"]) == 1 and page["next_cursor"] is not None
    rest = client.get("/v1/projects", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert rest["items"][0]["name"] == "other"


def test_bad_project_input_is_rejected_and_changes_nothing(client, database) -> None:
    project = create_project(client)
    before = db_state(database)
    cases = [
        ({"name": "x", "classes": []}, 422, "classes"),
        ({"name": "x", "classes": ["a", "a"]}, 422, "listed twice"),
        ({"name": "x", "classes": ["a"], "settings": {"lambda_d": 1.5}}, 422, "settings.lambda_d"),
        ({"name": "x", "classes": ["a"], "settings": {"model": "yolo"}}, 422, "unknown model preset"),
        ({"name": "x", "classes": ["a"], "settings": {"unknown": 1}}, 422, "settings.unknown"),
        ({"name": "cells", "classes": ["a"]}, 409, "already exists"),
    ]
    for body, status, words in cases:
        response = client.post("/v1/projects", json=body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["detail"], response.json()
        assert set(response.json()) == {"error", "detail"}
    response = client.patch(f"/v1/projects/{project['id']}", json={"settings": {"t_d": 0}})
    assert response.status_code == 422 and "t_d" in response.json()["detail"]
    assert client.get("/v1/projects/999").status_code == 404
    assert client.patch("/v1/projects/999", json={}).status_code == 404
    malformed = client.post(
        "/v1/projects", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert malformed.status_code == 422
    assert db_state(database) == before


def test_weights_settings_name_a_source_that_exists_and_fits_the_model(client, database, tmp_path) -> None:
    create_project(client)
    before = db_state(database)
    outside = "/etc/hostname"  # exists, but outside the allowed roots
    cases = [
        ({"weights": "imagenet21k"}, 422, "weights"),  # the schema's pattern: a source or an absolute path
        ({"weights": "relative/file.pt"}, 422, "weights"),
        ({"weights": "coco"}, 422, "needs a *_r50_fpn model"),
        ({"weights": "none", "pretrained": True}, 422, "contradicts"),
        ({"weights": str(tmp_path / "missing.pt")}, 404, "does not exist"),
        ({"weights": f"file://{outside}"}, 403, "outside the allowed image roots"),
    ]
    for settings, status, words in cases:
        response = client.post("/v1/projects", json={"name": "w", "classes": ["a"], "settings": settings})
        assert response.status_code == status, (settings, response.text)
        assert words in response.json()["detail"] and "weights" in response.json()["detail"], response.text
    assert db_state(database) == before
    weights = tmp_path / "mine.pt"
    weights.write_bytes(b"checked by the worker, which reads tensors only")
    made = client.post(
        "/v1/projects", json={"name": "w", "classes": ["a"], "settings": {"weights": f"file://{weights}"}}
    )
    assert made.status_code == 201 and made.json()["settings"]["weights"] == f"file://{weights}"
    changed = client.patch(f"/v1/projects/{made.json()['id']}", json={"settings": {"weights": "bad"}})
    assert changed.status_code == 422 and "weights" in changed.json()["detail"]
    coco = {"model": "faster_rcnn_r50_fpn", "weights": "coco"}
    assert (
        client.post("/v1/projects", json={"name": "c", "classes": ["a"], "settings": coco}).status_code == 201
    )
