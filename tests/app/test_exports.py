"""Exports in every format, each re-imported into a new project giving the same boxes (round trips), and
checked against its layout's documented rules; the partial-label export against the training set builder."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import yaml
from PIL import Image as PILImage

from app.rounds.training_set import training_set
from tests.factories import coco_for, create_project, import_coco, register_images, seed_pool

CLASSES = ["cat", "dog"]


def _labelled_project(client, database, tmp_path: Path) -> tuple[int, list[dict]]:
    """img00000 fully labeled (two boxes), img00001 partly (one adjusted box, one background answer, one
    prediction nobody answered), img00002 unlabeled; a test image with its ground truth."""
    pid = create_project(client, classes=CLASSES)["id"]
    pool = register_images(client, pid, tmp_path / "pool", 3)
    test = register_images(client, pid, tmp_path / "test", 1, split="test", prefix="t")
    truth = {"img00000": [([1, 2, 20, 30], "cat"), ([30, 5, 60, 47], "dog")]}
    import_coco(client, pid, coco_for(pool[:1], truth, CLASSES))
    import_coco(client, pid, coco_for(test, {"t00000": [([3, 4, 13, 14], "dog")]}, CLASSES))
    seed_pool(database, pid, [pool[1]["id"]], 3)
    leased = client.post(f"/v1/projects/{pid}/queries", json={"k": 2, "annotator": "a"}).json()["queries"]
    answers = [
        {"query_id": leased[0]["query_id"], "action": "adjust", "bbox": [4, 5, 30, 40], "label": "dog"},
        {"query_id": leased[1]["query_id"], "action": "background"},
    ]
    assert client.post(f"/v1/projects/{pid}/labels", json={"labels": answers}).status_code == 200
    return pid, pool + test


def _boxes(client, pid: int) -> dict[str, list[tuple[list[float], int]]]:
    """external id -> sorted (bbox xyxy, category) of the project's labeled boxes, from its COCO export."""
    coco = client.get(f"/v1/projects/{pid}/export").json()
    external = {im["id"]: im["boxal_external_id"] for im in coco["images"]}
    out: dict[str, list[tuple[list[float], int]]] = {}
    for a in coco["annotations"]:
        x, y, w, h = a["bbox"]
        out.setdefault(external[a["image_id"]], []).append(([x, y, x + w, y + h], a["category_id"]))
    return {k: sorted(v) for k, v in out.items()}


def _unzip(client, pid: int, folder: Path, **params) -> Path:
    response = client.get(f"/v1/projects/{pid}/export", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(response.content)).extractall(folder)
    return folder


def test_coco_export_round_trips_by_external_id(client, database, tmp_path: Path) -> None:
    pid, images = _labelled_project(client, database, tmp_path)
    exported = client.get(f"/v1/projects/{pid}/export").json()
    again = create_project(client, name="again", classes=CLASSES)["id"]
    items = [{"uri": f"file://{tmp_path}/{'test' if im['split'] == 'test' else 'pool'}/{im['file_name']}",
              "split": im["split"], "external_id": im["external_id"]} for im in images]  # fmt: skip
    assert client.post(f"/v1/projects/{again}/images", json={"images": items}).status_code == 201
    import_coco(client, again, exported)
    assert _boxes(client, again) == _boxes(client, pid)
    assert set(_boxes(client, pid)) == {"img00000", "img00001", "t00000"}


def test_voc_export_follows_the_layout_and_round_trips(client, database, tmp_path: Path) -> None:
    pid, _ = _labelled_project(client, database, tmp_path)
    root = _unzip(client, pid, tmp_path / "voc", format="voc", images="true")
    sets = {p.stem: p.read_text().split() for p in (root / "ImageSets" / "Main").glob("*.txt")}
    assert sets == {"trainval": ["img00000", "img00001"], "test": ["t00000"], "partial": ["img00001"]}
    for xml in (root / "Annotations").glob("*.xml"):  # the layout's rules: 1-based whole pixels inside
        tree = ET.parse(xml).getroot()
        assert tree.tag == "annotation" and (root / "JPEGImages" / tree.findtext("filename")).is_file()
        width, height = int(tree.findtext("size/width")), int(tree.findtext("size/height"))
        for obj in tree.findall("object"):
            assert obj.findtext("name") in CLASSES and obj.findtext("difficult") == "0"
            xmin, ymin, xmax, ymax = (
                int(obj.findtext(f"bndbox/{t}")) for t in ("xmin", "ymin", "xmax", "ymax")
            )
            assert 1 <= xmin < xmax <= width and 1 <= ymin < ymax <= height
    again = create_project(client, name="again", classes=CLASSES)["id"]
    for image_set, split in (("trainval", "pool"), ("test", "test")):
        body = {"format": "voc", "path": str(root), "image_set": image_set, "register_split": split}
        report = client.post(f"/v1/projects/{again}/imports", json=body).json()
        assert report["skipped_count"] == 0, report
    assert _boxes(client, again) == _boxes(client, pid)
    complete = _unzip(client, pid, tmp_path / "complete", format="voc", complete="true")
    assert sorted(p.stem for p in (complete / "Annotations").glob("*.xml")) == ["img00000", "t00000"]
    assert not (complete / "JPEGImages").exists()  # images only when asked for


def test_yolo_export_follows_the_layout_and_round_trips(client, database, tmp_path: Path) -> None:
    pid, _ = _labelled_project(client, database, tmp_path)
    root = _unzip(client, pid, tmp_path / "yolo", format="yolo", images="true")
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == {0: "cat", 1: "dog"} and (data["train"], data["val"]) == (
        "train/images",
        "val/images",
    )
    assert (root / "partial.txt").read_text().split() == ["train/images/img00001.png"]
    for subset in ("train", "val"):  # the layout's rules: a label file per image, class cx cy w h in [0, 1]
        stems = {p.stem for p in (root / subset / "images").iterdir()}
        assert stems == {p.stem for p in (root / subset / "labels").glob("*.txt")}
        for labels in (root / subset / "labels").glob("*.txt"):
            for line in labels.read_text().splitlines():
                cls, *values = line.split()
                assert int(cls) in (0, 1) and len(values) == 4 and all(0 <= float(v) <= 1 for v in values)
    again = create_project(client, name="again", classes=CLASSES)["id"]
    for subset, split in (("train", "pool"), ("val", "test")):
        body = {"format": "yolo", "path": str(root), "subsets": [subset], "register_split": split}
        report = client.post(f"/v1/projects/{again}/imports", json=body).json()
        assert report["skipped_count"] == 0, report
    ours, theirs = _boxes(client, pid), _boxes(client, again)
    assert ours.keys() == theirs.keys()
    for key in ours:  # six decimals of a normalised coordinate: within a hundredth of a pixel
        for (a, ca), (b, cb) in zip(ours[key], theirs[key], strict=True):
            assert ca == cb and max(abs(x - y) for x, y in zip(a, b, strict=True)) < 0.01
    with PILImage.open(root / "train" / "images" / "img00000.png") as image:
        assert image.size == (64, 48)


def test_partial_export_is_the_training_set_the_builder_makes(client, database, tmp_path: Path) -> None:
    pid, _ = _labelled_project(client, database, tmp_path)
    response = client.get(f"/v1/projects/{pid}/export", params={"format": "partial"})
    assert response.status_code == 200, response.text
    exported = response.json()
    training = exported["boxal_training"]
    assert (training["lambda_d"], training["noisy"], training["noisy_from"]) == (
        0.5,
        "dampen",
        "first predictions",
    )
    with database.transaction(write=False) as session:
        records = training_set(session, pid, training["snapshot_event_id"], lambda_d=0.5)
    assert [r["image_id"] for r in training["images"]] == [r.image_id for r in records]
    for mine, record in zip(training["images"], records, strict=True):
        assert mine["complete"] == record.complete
        assert [(b["box_id"], b["role"], b["weight"]) for b in mine["boxes"]] == [
            (b.box_id, "noisy" if b.noisy else "labeled", b.weight) for b in record.boxes
        ]
        assert [[x, y, x + w, y + h] for x, y, w, h in mine["negatives"]] == record.negatives
    partly = training["images"][1]
    assert not partly["complete"]
    roles = sorted((b["role"], b["weight"], b["source"], b["model_version"]) for b in partly["boxes"])
    assert roles == [("labeled", 1.0, "predicted", "m0"), ("noisy", 0.5, "predicted", "m0")]
    assert len(partly["negatives"]) == 1  # the background answer trains as background
    assert all(b["role"] == "labeled" for b in training["images"][0]["boxes"])  # fully labeled: no noise
    # its COCO part is an ordinary COCO export of the pool: it re-imports to the same labeled boxes
    again = create_project(client, name="again", classes=CLASSES)["id"]
    items = [{"uri": f"file://{tmp_path}/pool/{im['file_name']}", "split": "pool",
              "external_id": im["boxal_external_id"]} for im in exported["images"]]  # fmt: skip
    assert client.post(f"/v1/projects/{again}/images", json={"images": items}).status_code == 201
    import_coco(client, again, {k: v for k, v in exported.items() if k != "boxal_training"})
    pool = {k: v for k, v in _boxes(client, pid).items() if not k.startswith("t")}
    assert _boxes(client, again) == pool
