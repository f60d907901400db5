"""The lease queues' ordering, shared by the migration that indexes it and the query that walks it.

Boxes and images are served highest informativeness first, unscored (NULL) last, ties by id.
SQLite sorts NULLs last under DESC and refuses ``NULLS LAST`` in an index; PostgreSQL needs it said.
The partial indexes ``ix_boxes_queue`` and ``ix_images_queue`` live in migration 0001; the served
ranking of a round's boxes, ``ix_box_scores_queue`` on ``box_scores``, in migration 0004.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement

QUEUE_INDEXES = ("ix_boxes_queue", "ix_images_queue", "ix_box_scores_queue")
BOX_QUEUE_WHERE = "status = 'unlabeled'"
IMAGE_QUEUE_WHERE = "split = 'pool' AND NOT fully_labeled"


def informativeness_order(column: Any, dialect: str) -> ColumnElement[Any]:
    return column.desc() if dialect == "sqlite" else column.desc().nulls_last()


def informativeness_index_sql(dialect: str) -> str:
    return "informativeness DESC" if dialect == "sqlite" else "informativeness DESC NULLS LAST"
