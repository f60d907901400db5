from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.db import Database
from app.migrate import downgrade, upgrade
from app.models import Base


def test_upgrade_matches_models_and_downgrade_removes_everything(database_url: str) -> None:
    db = Database(database_url)
    try:
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(context, Base.metadata) if "queue" not in str(d)]
        assert diff == [], f"models and migrations disagree: {diff}"
        assert "ix_boxes_queue" in {ix["name"] for ix in inspect(db.engine).get_indexes("boxes")}
        assert "ix_images_queue" in {ix["name"] for ix in inspect(db.engine).get_indexes("images")}

        downgrade(db.engine, "base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade(db.engine)
        assert {t.name for t in Base.metadata.sorted_tables} <= set(inspect(db.engine).get_table_names())
    finally:
        db.dispose()
