"""Per-process resources of a worker: settings, database, artifacts, and a small cache of loaded models."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections import OrderedDict
from functools import cached_property
from pathlib import Path

import torch

from app.db import Database
from app.images import remote
from app.settings import Settings, get_settings
from app.worker_state import alive
from worker.artifacts import Artifacts
from worker.engine.detector import Detector, build_detector
from worker.engine.presets import get_preset
from worker.engine.train import pick_device

MODELS_KEPT = 2


def process_started(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/<pid>/stat``), or None where
    unknown: with the pid it names one process, never a later one that reused the pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def holder_gone(token: str) -> bool:
    """Whether the process a job or shard record names (``host:pid[.started]:random``, WorkerContext.token)
    is known to be gone: it ran on this machine and no process runs under its pid now, or another process
    does (a restarted container's worker gets pid 1 again). Elsewhere: not known."""
    host, _, rest = token.partition(":")
    pid, _, started = rest.partition(":")[0].partition(".")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if not alive(int(pid)):
        return True
    return bool(started) and process_started(int(pid)) not in (None, started)


class WorkerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        remote.configure(settings)  # the engine reads remote images through this worker's cache
        self.artifacts = Artifacts(settings)
        # names this process (and, with its start time, no later one under the same pid) and this context in
        # job and shard records: "host:pid.started:random"
        pid = os.getpid()
        started = process_started(pid)
        self.token = f"{socket.gethostname()}:{pid}{'.' + started if started else ''}:{uuid.uuid4().hex[:6]}"
        self.pid = pid
        self._models: OrderedDict[str, Detector] = OrderedDict()

    @cached_property
    def db(self) -> Database:
        return Database.for_settings(self.settings)

    def detector(self, model_version: str) -> Detector:
        """The trained detector of a model version, loaded once per process (the last few are kept)."""
        if model_version in self._models:
            self._models.move_to_end(model_version)
            return self._models[model_version]
        path = self.artifacts.model(model_version)
        payload = torch.load(path, map_location="cpu", weights_only=False)
        detector = build_detector(  # the saved model is its own weights file (norm layers included)
            get_preset(payload["preset"]),
            payload["num_classes"],
            weights=str(path),
            min_size=payload["min_size"],
            max_size=payload["max_size"],
            backend=payload.get("backend", "torchvision"),  # models saved before backends were chosen
            config=payload.get("detectron2_config"),
        )
        detector.model.to(pick_device()).eval()
        self._models[model_version] = detector
        while len(self._models) > MODELS_KEPT:
            self._models.popitem(last=False)
        return detector


_contexts = threading.local()  # each task thread its own: its own token, so two never share a claim
_override: list[WorkerContext] = []


def context() -> WorkerContext:
    """This thread's worker context (made on first use, and anew after a fork)."""
    if _override:
        return _override[0]
    ctx: WorkerContext | None = getattr(_contexts, "ctx", None)
    if ctx is None or ctx.pid != os.getpid():
        ctx = _contexts.ctx = WorkerContext(get_settings())
    return ctx


def set_context(ctx: WorkerContext | None) -> None:
    """For tests that run stages in process against their own settings (every thread then shares it)."""
    _override[:] = [ctx] if ctx is not None else []
