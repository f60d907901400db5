from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel


class JobPublic(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "succeeded", "failed"]
    progress: dict[str, Any]
    error: str | None
    project_id: int
    round: int | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None = None  # the worker's last sign of life on this job
    losses: int = 0  # times the worker process running it died (killed, out of memory); it fails at 5
