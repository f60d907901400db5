"""The FastAPI application: routers, error rendering, middleware. ``create_app(settings)`` builds one."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from app.db import Database
from app.enqueue import Enqueuer
from app.errors import DomainError
from app.exports.router import router as export_router
from app.health.router import router as health_router
from app.images.router import router as images_router
from app.imports.router import router as imports_router
from app.jobs.router import router as jobs_router
from app.label_studio.router import router as label_studio_router
from app.labels.router import router as labels_router
from app.lifeline import watch_parent
from app.middleware import BodyLimit, CancelOnDisconnect, InternalErrors, RequestMetrics
from app.openapi import allowed_methods, state_enforced_limits
from app.projects.router import router as projects_router
from app.queries.router import router as queries_router
from app.rounds.router import router as rounds_router
from app.settings import Settings, get_settings
from app.validation import describe_errors

log = logging.getLogger("boxal")
UI_DIR = Path(__file__).resolve().parent / "static" / "ui"

HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
}


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return _error(exc.status_code, exc.code, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, "validation_error", describe_errors(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        response = _error(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), str(exc.detail))
        if exc.status_code == 405:  # RFC 9110: say which methods the resource has (every route of the path)
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return response

    @app.exception_handler(IntegrityError)
    async def integrity_error(_: Request, exc: IntegrityError) -> JSONResponse:
        log.info("integrity conflict: %s", exc.orig)
        return _error(409, "conflict", "the change conflicts with a concurrent one; nothing was saved, retry")

    @app.exception_handler(OperationalError)
    @app.exception_handler(PoolTimeout)
    async def database_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", exc)
        return _error(503, "unavailable", "the database is unavailable; nothing was saved, retry shortly")

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return _error(503, "unavailable", "the database connection was lost; nothing was saved, retry")
        return await internal_error(_, exc)

    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        """Within the exception middleware; anything else unexpected ends in app/middleware.InternalErrors."""
        incident = uuid.uuid4().hex[:12]
        log.exception("internal error %s", incident, exc_info=exc)
        return _error(
            500, "internal", f"internal error (incident {incident}); this is a bug, please report it"
        )


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    db = database or Database.for_settings(settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if settings.api_workers > 1 and settings.parent_pid == os.getppid():
            watch_parent(settings, lambda: os.kill(os.getpid(), signal.SIGKILL))  # gone with `boxal serve`
        with db.no_blocking_calls_on_this_thread():  # this is the event loop's thread
            yield
        if database is None:
            db.dispose()

    app = FastAPI(
        title="boxal",
        version="1.0",
        summary="Box-level active learning for object detection",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = db
    app.state.enqueuer = Enqueuer(settings)
    _install_error_handlers(app)
    for router in (
        projects_router,
        images_router,
        imports_router,
        queries_router,
        labels_router,
        rounds_router,
        jobs_router,
        export_router,
        health_router,
        label_studio_router,
    ):
        app.include_router(router)
    app.mount("/ui", StaticFiles(directory=UI_DIR, html=True), name="ui")
    state_enforced_limits(app, settings)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics)
    app.add_middleware(CancelOnDisconnect)  # it owns the server's receive
    app.add_middleware(InternalErrors)  # outermost: a 500 that does not close the connection
    return app
