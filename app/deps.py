"""Request-scoped dependencies: settings, database sessions, paging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.orm import Session

from app.db import Database
from app.enqueue import Enqueuer
from app.errors import Invalid
from app.schemas import MAX_ID
from app.settings import Settings


def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


def get_database(request: Request) -> Database:
    return request.app.state.db


def get_enqueuer(request: Request) -> Enqueuer:
    return request.app.state.enqueuer


def write_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    """A read-write unit of work. The route commits once, before it answers; anything else rolls back."""
    session = db.session(write=True)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


def read_session(db: Annotated[Database, Depends(get_database)]) -> Iterator[Session]:
    session = db.session(write=False)
    try:
        yield session
    finally:
        session.rollback()
        session.close()


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: int | None


def page_params(
    settings: Annotated[Settings, Depends(get_settings_dep)],
    limit: Annotated[int, Query(ge=1, le=100_000, description="items per page")] = 100,
    cursor: Annotated[
        int | None, Query(ge=0, le=MAX_ID, description="next_cursor of the previous page")
    ] = None,
) -> PageParams:
    if limit > settings.max_page_size:
        raise Invalid(f"limit: at most {settings.max_page_size} items per page")
    return PageParams(limit=limit, cursor=cursor)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
DatabaseDep = Annotated[Database, Depends(get_database)]
WriteSession = Annotated[Session, Depends(write_session)]
ReadSession = Annotated[Session, Depends(read_session)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
Paging = Annotated[PageParams, Depends(page_params)]
