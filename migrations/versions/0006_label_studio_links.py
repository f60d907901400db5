"""Label Studio projects served through the ML-backend protocol, each linked to a boxal project

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.models.base import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_studio_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("ls_project", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("from_name", sa.String(length=200), nullable=False),
        sa.Column("to_name", sa.String(length=200), nullable=False),
        sa.Column("value", sa.String(length=200), nullable=False),
        sa.Column("synced_version", sa.String(length=64), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_label_studio_links_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_label_studio_links")),
        sa.UniqueConstraint("ls_project", name=op.f("uq_label_studio_links_ls_project")),
        sa.UniqueConstraint("project_id", name=op.f("uq_label_studio_links_project_id")),
    )


def downgrade() -> None:
    op.drop_table("label_studio_links")
