from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from app.auth.deps import Admin
from app.metrics import REGISTRY
from app.schemas import ERRORS

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    database: str
    broker: str


@router.get("/health", response_model=Health, responses={503: {"model": Health}})
def health(request: Request) -> Response:
    """Liveness with dependency checks: 200 while the database answers (the broker is reported)."""
    try:
        with request.app.state.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception:
        database = "unavailable"
    broker = "ok" if request.app.state.enqueuer.ping() else "unavailable"
    body = Health(status="ok" if database == "ok" else "unavailable", database=database, broker=broker)
    return JSONResponse(body.model_dump(), status_code=200 if database == "ok" else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **ERRORS})
def metrics(_: Admin) -> Response:
    """Prometheus metrics (admin token)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
