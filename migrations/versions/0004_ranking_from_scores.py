"""the served box ranking is read from box_scores: an index to walk a round's scores highest first

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_box_scores_queue", "box_scores", ["round_id", sa.text("informativeness DESC"), "box_id"]
    )


def downgrade() -> None:
    op.drop_index("ix_box_scores_queue", table_name="box_scores")
