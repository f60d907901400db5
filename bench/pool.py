"""A large scored pool written straight into the database, for benchmarks and load tests: images need no
files, only leasing and answering run against it."""

from __future__ import annotations

from typing import Any


def fill_pool(database: Any, project_id: int, boxes: int, per_image: int = 20) -> None:
    """``boxes`` predicted, scored, unlabeled boxes on new pool images of ``project_id``, ``per_image``
    each, with seeded random informativeness."""
    import random

    from sqlalchemy import insert, select

    from app.models import Box, Image, utcnow

    rng = random.Random(0)
    now = utcnow()
    with database.engine.begin() as conn:
        first = conn.execute(select(Image.id).order_by(Image.id.desc()).limit(1)).scalar() or 0
        count = boxes // per_image
        conn.execute(
            insert(Image),
            [
                {
                    "project_id": project_id,
                    "split": "pool",
                    "external_id": f"load{first + i}",
                    "file_name": f"load{i}.png",
                    "path": f"/nonexistent/load{i}.png",
                    "width": 640,
                    "height": 480,
                    "fully_labeled": False,
                    "created_at": now,
                }
                for i in range(count)
            ],
        )
        ids = list(
            conn.execute(
                select(Image.id).where(Image.project_id == project_id, Image.external_id.like("load%"))
            ).scalars()
        )
        rows = [
            {
                "project_id": project_id,
                "image_id": image_id,
                "source": "predicted",
                "status": "unlabeled",
                "x1": 10.0 + 25 * j,
                "y1": 10.0,
                "x2": 30.0 + 25 * j,
                "y2": 60.0,
                "label": j % 2,
                "score": 0.5,
                "informativeness": rng.random(),
                "round_predicted": 0,
                "created_at": now,
            }
            for image_id in ids
            for j in range(per_image)
        ]
        for start in range(0, len(rows), 20000):
            conn.execute(insert(Box), rows[start : start + 20000])
