"""The artifact store: checkpoints and features on disk under the data dir, named by model version."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from app.settings import Settings


class Artifacts:
    def __init__(self, settings: Settings) -> None:
        self.root = settings.artifacts_dir

    def model(self, model_version: str) -> Path:
        return self.root / "models" / f"{model_version}.pt"

    def _round(self, round_id: int) -> Path:
        return self.root / "rounds" / str(round_id)

    def training(self, round_id: int, job_id: str) -> Path:
        """Where a round's training keeps its resumable checkpoint (one folder per job attempt)."""
        return self._round(round_id) / job_id

    def drop_training(self, round_id: int) -> None:
        """Remove a round's resumable training checkpoints (weights and optimizer state, of every job
        attempt) once its model version is saved: nothing reads them after, and they are twice a model's
        size. The round's features stay (scoring reads them)."""
        folder = self._round(round_id)
        if folder.is_dir():
            for attempt in folder.iterdir():
                if attempt.is_dir() and attempt.name != "features":
                    shutil.rmtree(attempt, ignore_errors=True)

    def features(self, round_id: int, shard: int) -> Path:
        return self._round(round_id) / "features" / f"shard-{shard:05d}.npz"

    def save_model(self, model_version: str, payload: dict[str, Any]) -> Path:
        path = self.model(model_version)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        return path

    def save_features(self, round_id: int, shard: int, **arrays: np.ndarray) -> None:
        path = self.features(round_id, shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **cast(dict[str, Any], arrays))
        os.replace(tmp, path)

    def load_features(self, round_id: int) -> list[dict[str, np.ndarray]]:
        folder = self._round(round_id) / "features"
        out = []
        for path in sorted(folder.glob("shard-*.npz")):
            with np.load(path) as data:
                out.append({key: data[key] for key in data.files})
        return out
