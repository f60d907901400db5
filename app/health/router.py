"""Liveness and metrics. /health answers from the event loop with bounded checks, so it stays
truthful when every request thread is busy (it never queues behind the requests it reports on)."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.to_thread
from anyio.lowlevel import RunVar
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from app.auth.deps import Admin
from app.jobs.service import scoring_backlog
from app.metrics import Backlog, scrape
from app.schemas import ERRORS

router = APIRouter(tags=["health"])
# threads of their own: the request threads may all be taken (that is when /health matters most)
_CHECK_THREADS: RunVar[anyio.CapacityLimiter] = RunVar("boxal_health_threads")


class Health(BaseModel):
    status: str
    database: str
    broker: str


def _check_threads() -> anyio.CapacityLimiter:
    try:
        return _CHECK_THREADS.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(4)
        _CHECK_THREADS.set(limiter)
        return limiter


async def _answers(check: Callable[[], object], timeout: float) -> bool:
    """Whether ``check`` returns (anything but False) without raising, within ``timeout`` seconds."""
    with anyio.move_on_after(timeout):
        try:
            result = await anyio.to_thread.run_sync(check, abandon_on_cancel=True, limiter=_check_threads())
        except Exception:
            return False
        return result is not False
    return False


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
async def health(request: Request) -> Response:
    """Liveness with dependency checks: 200 while the database answers (the broker is reported).

    Each check has ``BOXAL_HEALTH_TIMEOUT_S`` to answer; the database check is a read that never
    waits for SQLite's write lock."""
    state = request.app.state
    timeout = state.settings.health_timeout_s
    results: dict[str, bool] = {}

    async def run(name: str, check: Callable[[], object]) -> None:
        results[name] = await _answers(check, timeout)

    async with anyio.create_task_group() as group:
        group.start_soon(run, "database", state.db.ping)
        group.start_soon(run, "broker", state.enqueuer.ping)
    database = "ok" if results["database"] else "unavailable"
    broker = "ok" if results["broker"] else "unavailable"
    body = Health(status="ok" if database == "ok" else "unavailable", database=database, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **ERRORS})
def metrics(request: Request, _: Admin) -> Response:
    """Prometheus metrics (admin token): every boxal process's under `boxal serve`, and the backlog of
    tasks and scoring shards."""
    state = request.app.state

    def shards() -> dict[str, int]:
        with state.db.transaction(write=False) as session:
            return scoring_backlog(session)

    return Response(scrape(Backlog(state.enqueuer.depth, shards)), media_type=CONTENT_TYPE_LATEST)
