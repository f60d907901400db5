from __future__ import annotations

from pathlib import Path

from tests.conftest import BCCD
from tests.factories import coco_for, create_project, db_state, import_coco, register_images


def test_bccd_voc_imports_cleanly_and_reports_its_two_zero_size_boxes(client) -> None:
    project = create_project(client, name="bccd", classes=["RBC", "WBC", "Platelets"])
    pid = project["id"]
    response = client.post(
        f"/v1/projects/{pid}/imports",
        json={"format": "voc", "path": str(BCCD), "image_set": "test", "register_split": "test"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["images_registered"] == 72 and report["test_images"] == 72

    response = client.post(
        f"/v1/projects/{pid}/imports",
        json={"format": "voc", "path": str(BCCD), "image_set": "trainval", "register_split": "pool"},
    )
    report = response.json()
    assert report["images_registered"] == 292 and report["images_labeled"] == 292
    zero = [s for s in report["skipped"] if "zero or negative size" in s["reason"]]
    assert sorted(s["item"].split(".")[0] for s in zero) == ["BloodImage_00338", "BloodImage_00343"]
    total_boxes = report["boxes_imported"]
    test_boxes = client.get(f"/v1/projects/{pid}/export", params={"split": "test"}).json()["annotations"]
    assert total_boxes + len(test_boxes) + len(zero) == 4888  # every box of the data set is accounted for

    again = client.post(
        f"/v1/projects/{pid}/imports", json={"format": "voc", "path": str(BCCD), "image_set": "trainval"}
    ).json()
    assert again["boxes_imported"] == 0 and again["skipped_by_reason"]  # already has ground truth


def test_coco_ground_truth_and_predictions(client, tmp_path: Path) -> None:
    project = create_project(client)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 3)
    truth = coco_for(
        images[:1], {"img00000": [([1, 1, 20, 20], "cat"), ([5, 5, 60, 47], "dog")]}, ["cat", "dog"]
    )
    report = import_coco(client, pid, truth)
    assert (report["images_labeled"], report["boxes_imported"]) == (1, 2)
    detail = client.get(f"/v1/projects/{pid}/images/{images[0]['id']}").json()
    assert detail["fully_labeled"] and {b["status"] for b in detail["boxes"]} == {"labeled"}
    assert detail["boxes"][0]["bbox"] == [1, 1, 20, 20]

    preds = coco_for(
        images[1:],
        {"img00001": [([2, 2, 30, 30], "dog")], "img00002": [([0, 0, 9, 9], "cat")]},
        ["cat", "dog"],
        scores=True,
    )
    preds["annotations"][0]["probs"] = [0.3, 0.7]
    report = import_coco(client, pid, preds, kind="predictions")
    assert report["boxes_imported"] == 2
    box = client.get(f"/v1/projects/{pid}/images/{images[1]['id']}").json()["boxes"][0]
    assert (box["status"], box["source"], box["score"], box["probs"]) == (
        "unlabeled",
        "predicted",
        0.5,
        [0.3, 0.7],
    )


def test_defects_are_skipped_with_reasons(client, tmp_path: Path) -> None:
    project = create_project(client)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 2)
    data = coco_for(
        images,
        {
            "img00000": [([1, 1, 1, 10], "cat"), ([1, 1, 10, 10], "cat")],
            "img00001": [([-5, -5, 10, 10], "dog")],
        },
        ["cat", "dog"],
    )
    data["categories"].append({"id": 9, "name": "horse"})
    data["annotations"].append({"id": 99, "image_id": 1, "category_id": 9, "bbox": [1, 1, 5, 5]})
    data["images"].append({"id": 77, "file_name": "elsewhere.png", "width": 10, "height": 10})
    report = import_coco(client, pid, data)
    reasons = " | ".join(s["reason"] for s in report["skipped"])
    assert report["boxes_imported"] == 2 and report["boxes_clipped"] == 1
    assert "zero or negative size" in reasons and "not one of the project's classes" in reasons
    assert "not registered in this project" in reasons


def test_broken_imports_are_refused_and_change_nothing(client, database, tmp_path: Path) -> None:
    project = create_project(client)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 1)
    before = db_state(database)
    dangling = coco_for(images, {"img00000": [([1, 1, 5, 5], "cat")]}, ["cat", "dog"])
    dangling["annotations"].append({"id": 2, "image_id": 404, "category_id": 1, "bbox": [1, 1, 2, 2]})
    dangling["annotations"].append({"id": 3, "image_id": 1, "category_id": 42, "bbox": [1, 1, 2, 2]})
    response = client.post(f"/v1/projects/{pid}/imports", json={"format": "coco", "data": dangling})
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "image_id 404, which is not in images" in detail and "category_id 42" in detail

    voc = tmp_path / "voc"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "Annotations" / "img00000.xml").write_text("<annotation><size><width>64</width></size>")
    response = client.post(f"/v1/projects/{pid}/imports", json={"format": "voc", "path": str(voc)})
    assert response.status_code == 422 and "img00000.xml" in response.json()["detail"]

    cases = [
        ({"format": "voc", "path": "/etc"}, 403),  # outside the image roots
        ({"format": "voc", "path": "/nonexistent"}, 403),  # outside too: whether it exists is not told
        ({"format": "voc", "path": str(tmp_path / "nope")}, 404),  # under a root: not there
        ({"format": "voc", "path": str(voc), "image_set": "../x"}, 422),
        ({"format": "voc", "path": "relative/dir"}, 422),
        ({"format": "coco", "data": {"images": []}}, 422),
        (
            {
                "format": "coco",
                "kind": "predictions",
                "data": coco_for(images, {"img00000": [([1, 1, 5, 5], "cat")]}, ["cat"]),
            },
            422,
        ),
        ({"format": "xml", "path": str(voc)}, 422),
    ]
    for body, status in cases:
        response = client.post(f"/v1/projects/{pid}/imports", json=body)
        assert response.status_code == status, (body, response.text)
    assert db_state(database) == before


AQUARIUM = BCCD.parent / "aquarium"
AQUARIUM_CLASSES = ["fish", "jellyfish", "penguin", "puffin", "shark", "starfish", "stingray"]


def test_the_aquarium_yolo_directory_imports_its_638_images_and_accounts_for_all_4817_boxes(client) -> None:
    project = create_project(client, name="aquarium", classes=AQUARIUM_CLASSES)
    pid = project["id"]
    reports = []
    for subsets, split in ((["train"], "pool"), (["valid", "test"], "test")):
        response = client.post(
            f"/v1/projects/{pid}/imports",
            json={"format": "yolo", "path": str(AQUARIUM), "subsets": subsets, "register_split": split},
        )
        assert response.status_code == 200, response.text
        reports.append(response.json())
    pool, test = reports
    assert (pool["images_registered"], test["images_registered"]) == (448, 190)
    assert pool["images_labeled"] == 448 and test["test_images"] == 190
    # every box of the data set is accounted for: two test-subset lines have zero width and height
    assert pool["boxes_imported"] + test["boxes_imported"] + test["skipped_count"] == 4817
    assert pool["skipped_count"] == 0 and test["skipped_by_reason"] == {"zero or negative size (_ x _)": 2}


def test_yolo_lines_that_cannot_be_used_are_skipped_and_reported(client, tmp_path: Path) -> None:
    from PIL import Image as PILImage

    root = tmp_path / "yolo"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    (root / "data.yaml").write_text("train: ../train/images\nnc: 2\nnames: ['cat', 'dog']\n")
    PILImage.new("RGB", (200, 100)).save(root / "train" / "images" / "a.jpg")
    PILImage.new("RGB", (200, 100)).save(root / "train" / "images" / "b.png")  # no label file: no objects
    (root / "train" / "labels" / "a.txt").write_text(
        "0 0.5 0.5 0.2 0.4\n"  # cat at [80, 30, 120, 70]
        "5 0.5 0.5 0.2 0.2\n"  # class id outside data.yaml
        "1 1.5 0.5 0.2 0.2\n"  # outside [0, 1]
        "1 x 0.5 0.2 0.2\n"  # not numbers
        "\n"
        "1 0.1 0.1 0.3 0.1 0.2 0.4"  # a polygon (dog), the last line without a newline
    )
    project = create_project(client, name="y", classes=["cat", "dog"])
    response = client.post(
        f"/v1/projects/{project['id']}/imports",
        json={"format": "yolo", "path": str(root), "register_split": "pool"},
    )
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["images_registered"] == 2 and report["boxes_imported"] == 2
    reasons = {s["item"]: s["reason"] for s in report["skipped"]}
    assert set(reasons) == {f"train/labels/a.txt line {n}" for n in (2, 3, 4)}
    assert "class id 5 is not in data.yaml" in reasons["train/labels/a.txt line 2"]
    assert "outside [0, 1]" in reasons["train/labels/a.txt line 3"]
    assert "not numbers" in reasons["train/labels/a.txt line 4"]
    exported = client.get(f"/v1/projects/{project['id']}/export").json()
    boxes = sorted((a["bbox"], a["category_id"]) for a in exported["annotations"])
    assert boxes == [([20.0, 10.0, 40.0, 30.0], 2), ([80.0, 30.0, 40.0, 40.0], 1)]  # COCO xywh
    broken = client.post(
        f"/v1/projects/{project['id']}/imports", json={"format": "yolo", "path": str(tmp_path)}
    )
    assert broken.status_code == 422 and "data.yaml" in broken.json()["detail"]
