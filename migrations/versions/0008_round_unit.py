"""Rounds of a unit-auto project record the unit they serve and the figures it was chosen on

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.add_column(sa.Column("unit", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("unit_choice", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("unit_choice")
        batch.drop_column("unit")
