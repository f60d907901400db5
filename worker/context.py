"""Per-process resources of a worker: settings, database, artifacts, and a small cache of loaded models."""

from __future__ import annotations

import os
import socket
import uuid
from collections import OrderedDict
from functools import cached_property

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


def holder_gone(token: str) -> bool:
    """Whether the process a job or shard record names (``host:pid:random``, WorkerContext.token) is known
    to be gone: it ran on this machine and no process runs under its pid now. Elsewhere: not known."""
    host, _, rest = token.partition(":")
    pid = rest.partition(":")[0]
    return host == socket.gethostname() and pid.isdigit() and not alive(int(pid))


class WorkerContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        remote.configure(settings)  # the engine reads remote images through this worker's cache
        self.artifacts = Artifacts(settings)
        # names this process in job and shard records: "host:pid:random"
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
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


_context: WorkerContext | None = None


def context() -> WorkerContext:
    global _context
    if _context is None or _context.token.split(":")[1] != str(os.getpid()):  # new after a fork
        _context = WorkerContext(get_settings())
    return _context


def set_context(ctx: WorkerContext | None) -> None:
    """For tests that run stages in process against their own settings."""
    global _context
    _context = ctx
