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
from pydantic import BaseModel, Field

from app.auth.deps import Admin
from app.jobs.service import scoring_backlog
from app.metrics import Backlog, scrape
from app.schemas import ERRORS
from app.worker_state import WorkerHealth
from app.worker_state import health as worker_health

router = APIRouter(tags=["health"])
# threads of their own: the request threads may all be taken (that is when /health matters most)
_CHECK_THREADS: RunVar[anyio.CapacityLimiter] = RunVar("boxal_health_threads")


class Health(BaseModel):
    status: str = Field(description="ok while the database answers (the API serves), else unavailable")
    database: str = Field(description="ok | unavailable")
    broker: str = Field(description="ok | unavailable: whether the task broker takes messages")
    worker: WorkerHealth = Field(
        description="the worker `boxal serve` runs beside it: ok (consuming), starting, restarting (it "
        "exited; a new one starts after a backoff), failed (given up on after BOXAL_WORKER_RESTARTS "
        "restarts in a row), paused (stopped by SIGSTOP, Ctrl-Z or a debugger: it runs nothing until "
        "continued), stopped; external where this server started none (it cannot tell)"
    )
    queue: str = Field(
        description="ok | unavailable: whether rounds sent now will be worked on (the broker answers and "
        "no worker of this server's is down; with external workers, the broker alone)"
    )


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
    """Liveness with dependency checks: 200 while the database answers (the broker, the worker and so
    whether queued work will run are reported).

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
    worker = worker_health(state.settings)  # two small files and two pids: no thread needed
    body = Health(
        status="ok" if database == "ok" else "unavailable",
        database=database,
        broker=broker,
        worker=worker,
        queue="ok" if broker == "ok" and worker in ("ok", "external") else "unavailable",
    )
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
