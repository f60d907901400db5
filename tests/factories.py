"""Small builders for test data: image files, projects, registered images, imported ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image as PILImage


def write_image(
    path: Path, width: int = 64, height: int = 48, color: tuple[int, int, int] = (120, 80, 40)
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", (width, height), color).save(path)
    return path


def create_project(
    client: Any, name: str = "cells", classes: list[str] | None = None, **settings: Any
) -> dict:
    """A project on the paper's loop unless ``loop`` says otherwise (most tests pin its rules down; boxal's
    own loop has tests that say so)."""
    body = {"name": name, "classes": classes or ["cat", "dog"], "settings": {"loop": "paper", **settings}}
    response = client.post("/v1/projects", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def register_images(
    client: Any,
    project_id: int,
    folder: Path,
    count: int,
    *,
    split: str = "pool",
    prefix: str = "img",
    width: int = 64,
    height: int = 48,
) -> list[dict]:
    items = []
    for i in range(count):
        path = write_image(folder / f"{prefix}{i:05d}.png", width, height)
        items.append({"uri": f"file://{path}", "split": split, "width": width, "height": height})
    response = client.post(f"/v1/projects/{project_id}/images", json={"images": items})
    assert response.status_code == 201, response.text
    return response.json()["images"]


def coco_for(
    images: list[dict],
    boxes: dict[str, list[tuple[list[float], str]]],
    classes: list[str],
    scores: bool = False,
) -> dict:
    """A COCO dict for registered images: ``boxes`` maps external_id -> [(xyxy, class name)]."""
    cats = [{"id": i + 1, "name": name} for i, name in enumerate(classes)]
    coco_images = [
        {"id": i + 1, "file_name": im["file_name"], "width": im["width"], "height": im["height"]}
        for i, im in enumerate(images)
    ]
    id_of = {im["external_id"]: i + 1 for i, im in enumerate(images)}
    annotations = []
    for external_id, items in boxes.items():
        for bbox, name in items:
            x1, y1, x2, y2 = bbox
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": id_of[external_id],
                "category_id": classes.index(name) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
            }
            if scores:
                ann["score"] = 0.5
            annotations.append(ann)
    return {"images": coco_images, "categories": cats, "annotations": annotations}


def import_coco(client: Any, project_id: int, data: dict, kind: str = "annotations") -> dict:
    response = client.post(
        f"/v1/projects/{project_id}/imports", json={"format": "coco", "kind": kind, "data": data}
    )
    assert response.status_code == 200, response.text
    return response.json()


def seed_pool(
    database: Any,
    project_id: int,
    image_ids: list[int],
    per_image: int,
    *,
    classes: int = 2,
    shuffle: int | None = None,
) -> list[int]:
    """Put predicted, scored, unlabeled boxes on pool images directly (what a round's scoring leaves).

    Informativeness rises with image and box order, or is random under ``shuffle`` (a seed), so that
    one lease spans many images in no particular order.
    """
    import random

    from app.models import Box

    rng = random.Random(shuffle)
    rows = []
    with database.transaction() as session:
        for image_id in image_ids:
            for j in range(per_image):
                x = 2.0 + 6 * j
                rows.append(
                    Box(
                        project_id=project_id,
                        image_id=image_id,
                        source="predicted",
                        status="unlabeled",
                        x1=x,
                        y1=2.0,
                        x2=x + 5.0,
                        y2=20.0,
                        label=j % classes,
                        score=0.6,
                        probs=[0.6, 0.4][:classes],
                        informativeness=rng.random() if shuffle is not None else float(image_id * 1000 + j),
                        model_version="m0",
                        round_predicted=0,
                    )
                )
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows]


def db_state(database: Any) -> dict[str, list[tuple]]:
    """Every row of every table, to show that a rejected request changed nothing."""
    from sqlalchemy import select

    from app.models import Base

    state = {}
    with database.engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            rows = conn.execute(select(table).order_by(*table.primary_key.columns)).all()
            state[table.name] = [tuple(row) for row in rows]
    return state
