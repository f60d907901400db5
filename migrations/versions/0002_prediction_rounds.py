"""images.predicted_round (pool policy fixed predicts each image once) and shards.worker

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("predicted_round", sa.Integer(), nullable=True))
    with op.batch_alter_table("shards") as batch:
        batch.add_column(sa.Column("worker", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shards") as batch:
        batch.drop_column("worker")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("predicted_round")
