"""Per class, what a round trained on and what is left to ask: the counts beside its per-class AP.

``labeled`` and ``noisy``: the boxes of the round's training set (the builder's records as of the round's
snapshot); ``queued``: predicted boxes nobody has answered yet, on pool images not fully labeled (the
queue box queries are served from); ``test_boxes``: the test split's ground truth.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Box, Image
from app.rounds.training_set import TrainingImages, training_set


def class_counts(
    session: Session, project_id: int, snapshot: int, classes: list[str], images: TrainingImages
) -> list[dict[str, Any]]:
    labeled: Counter[int] = Counter()
    noisy: Counter[int] = Counter()
    for record in training_set(session, project_id, snapshot, lambda_d=1.0, images=images):
        for box in record.boxes:
            (noisy if box.noisy else labeled)[box.label] += 1
    queued_stmt = (
        select(Box.label, func.count())
        .join(Image, Image.id == Box.image_id)
        .where(
            Box.project_id == project_id,
            Box.source == "predicted",
            Box.status == "unlabeled",
            Image.split == "pool",
            Image.fully_labeled.is_(False),
        )
        .group_by(Box.label)
    )
    queued = {label: n for label, n in session.execute(queued_stmt)}
    test_stmt = (
        select(Box.label, func.count())
        .join(Image, Image.id == Box.image_id)
        .where(Box.project_id == project_id, Box.status == "labeled", Image.split == "test")
        .group_by(Box.label)
    )
    test = {label: n for label, n in session.execute(test_stmt)}
    return [
        {
            "class": name,
            "labeled": labeled[k],
            "noisy": noisy[k],
            "queued": queued.get(k, 0),
            "test_boxes": test.get(k, 0),
        }
        for k, name in enumerate(classes)
    ]
