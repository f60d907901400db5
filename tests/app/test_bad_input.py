"""What a new user sends by mistake is a clear 4xx that changes nothing, or a line of the report naming it
(issue 47): normalised coordinates and slivers as boxes, import ids that match nothing, a round closed
before it has what it asked for, images registered twice; and import reports whose keys read as words."""

from __future__ import annotations

from pathlib import Path

from PIL import Image as PILImage

from oracle.answers import GroundTruth, Oracle
from tests.factories import create_project, db_state, register_images, seed_pool, write_image


def _box_query(client, database, tmp_path: Path, width: int = 2048, height: int = 1371) -> tuple[int, dict]:
    project = create_project(client, classes=["white-pawn", "black-pawn"])
    pid = project["id"]
    path = write_image(tmp_path / "big" / "board.png", width, height)
    image = client.post(f"/v1/projects/{pid}/images", json={"images": [{"uri": f"file://{path}"}]}).json()[
        "images"
    ][0]
    seed_pool(database, pid, [image["id"]], 1)
    [query] = client.post(
        f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "a", "unit": "box"}
    ).json()["queries"]
    return pid, query


def test_normalised_coordinates_and_slivers_are_refused_saying_so(client, database, tmp_path: Path) -> None:
    pid, query = _box_query(client, database, tmp_path)
    before = db_state(database)
    normalised = {
        "query_id": query["query_id"],
        "action": "adjust",
        "bbox": [0.12, 0.29, 0.19, 0.42],
        "label": "white-pawn",
    }
    response = client.post(f"/v1/projects/{pid}/labels", json={"labels": [normalised]})
    assert response.status_code == 422
    assert (
        "looks normalised" in response.json()["detail"]
        and "[245.8, 397.6, 389.1, 575.8]" in response.json()["detail"]
    )
    sliver = {**normalised, "bbox": [100, 100, 101.5, 300]}
    response = client.post(f"/v1/projects/{pid}/labels", json={"labels": [sliver]})
    assert (
        response.status_code == 422
        and "1.5x200 px; a box is at least 2 px a side" in response.json()["detail"]
    )
    assert db_state(database) == before
    fine = {**normalised, "bbox": [245.8, 397.6, 389.1, 575.8]}
    assert client.post(f"/v1/projects/{pid}/labels", json={"labels": [fine]}).status_code == 200


def test_the_simulated_oracle_answers_a_1_px_object_with_a_box_the_api_takes(
    client, database, tmp_path: Path
) -> None:
    """Aquarium's pool holds a 1x1 px object: drawing its image ended a 92-minute `boxal simulate` run
    with this 422 until the oracle answered the smallest box the API takes."""
    project = create_project(client, unit="image")
    pid = project["id"]
    [image] = register_images(client, pid, tmp_path / "pool", 1)
    seed_pool(database, pid, [image["id"]], 1)
    [query] = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "a"}).json()["queries"]
    truth = [GroundTruth([63.5, 47.5, 64.0, 48.0], "cat"), GroundTruth([10.5, 10.5, 11.5, 11.5], "dog")]
    answer = Oracle({query["image"]["external_id"]: truth}).answer(query)
    response = client.post(f"/v1/projects/{pid}/labels", json={"labels": [answer]})
    assert response.status_code == 200, response.text
    stored = client.get(f"/v1/projects/{pid}/export", params={"format": "coco"}).json()["annotations"]
    assert sorted(a["bbox"] for a in stored) == [[10.0, 10.0, 2.0, 2.0], [62.0, 46.0, 2.0, 2.0]]


def test_ids_that_match_nothing_are_422_and_a_partial_match_reports_the_rest(client, tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    (root / "data.yaml").write_text("train: ../train/images\nnc: 1\nnames: ['cat']\n")
    for name in ("a", "b"):
        PILImage.new("RGB", (40, 30)).save(root / "train" / "images" / f"{name}.jpg")
        (root / "train" / "labels" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.4\n")
    pid = create_project(client, classes=["cat"])["id"]
    body = {"format": "yolo", "path": str(root), "register_split": "pool"}
    typo = client.post(f"/v1/projects/{pid}/imports", json={**body, "ids": ["A", "c"]})
    assert typo.status_code == 422 and "none of ['A', 'c'] is a file stem" in typo.json()["detail"]
    assert client.get(f"/v1/projects/{pid}/images").json()["items"] == []
    partly = client.post(f"/v1/projects/{pid}/imports", json={**body, "ids": ["a", "c"]})
    assert partly.status_code == 200, partly.text
    report = partly.json()
    assert report["images_labeled"] == 1 and report["skipped"] == [
        {"item": "image c (c)", "reason": "ids: no file with this stem in the directory"}
    ]


def test_import_report_keys_read_as_words(client, tmp_path: Path) -> None:
    pid = create_project(client, classes=["white-pawn", "black-pawn"])["id"]
    images = register_images(client, pid, tmp_path / "pool", 1)
    coco = {
        "images": [{"id": 1, "file_name": images[0]["file_name"], "width": 64, "height": 48}],
        "categories": [{"id": 1, "name": "white_pawn"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    }
    report = client.post(f"/v1/projects/{pid}/imports", json={"format": "coco", "data": coco}).json()
    assert report["skipped_by_reason"] == {"class _ is not one of the project's classes [...]": 1}


def test_a_round_that_still_needs_answers_closes_only_with_force(client, database, tmp_path: Path) -> None:
    from app.models import Project, Round

    project = create_project(client, round_size=100)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 3)
    with database.transaction() as session:  # round 1 open, 99 answers still to come
        session.add(Round(project_id=pid, number=1, state="open", model_version="m1", snapshot_event_id=0))
        session.get(Project, pid).serving_round = 1
    seed_pool(database, pid, [images[0]["id"]], 2)
    [query] = client.post(f"/v1/projects/{pid}/queries", json={"k": 1, "annotator": "a"}).json()["queries"]
    client.post(
        f"/v1/projects/{pid}/labels",
        json={"labels": [{"query_id": query["query_id"], "action": "background"}]},
    )
    before = db_state(database)
    early = client.post(f"/v1/projects/{pid}/rounds")
    assert early.status_code == 409
    assert "round 1 has 1 of the 100 answers it asks for (99 to go)" in early.json()["detail"]
    assert '{"force": true}' in early.json()["detail"] and db_state(database) == before
    forced = client.post(f"/v1/projects/{pid}/rounds", json={"force": True})
    assert forced.status_code == 202 and forced.json()["round"] == 2


def test_registering_images_again_can_skip_those_that_exist(client, tmp_path: Path) -> None:
    pid = create_project(client)["id"]
    folder = tmp_path / "pool"
    for i in range(2):
        write_image(folder / f"img{i}.png")
    assert client.post(f"/v1/projects/{pid}/images", json={"prefix": str(folder)}).status_code == 201
    write_image(folder / "img2.png")  # added since
    again = client.post(f"/v1/projects/{pid}/images", json={"prefix": str(folder)})
    assert again.status_code == 409 and '"existing": "skip"' in again.json()["detail"]
    skipped = client.post(f"/v1/projects/{pid}/images", json={"prefix": str(folder), "existing": "skip"})
    assert skipped.status_code == 201, skipped.text
    assert [im["external_id"] for im in skipped.json()["images"]] == ["img2"]
    assert sorted(s["item"] for s in skipped.json()["skipped"]) == ["img0", "img1"]
    assert all(s["reason"] == "already registered: skipped" for s in skipped.json()["skipped"])
