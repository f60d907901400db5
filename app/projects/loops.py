"""The ``loop`` setting: the defaults of the settings that make an active-learning loop, boxal's (what its
pilots chose) or the paper's, each setting still a project's own to set."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from app.schemas import Strict

# What "loop" sets, where a project does not set it itself. boxal's: the loop its pilots chose on BCCD and
# Aquarium (docs/results: candidates from the current model at 0.5, pseudo-labels from 0.9 recomputed every
# round, the unknown background weighted by the model's own belief); the paper's (Desai & Balasubramanian):
# the first model's predictions above t_d as frozen noisy targets, every prediction a candidate.
LOOPS: dict[str, dict[str, Any]] = {
    "boxal": {
        "strategy": "least_confidence_bg",
        "pool_policy": "refresh",
        "query_min_score": 0.5,
        "noisy_targets": "pseudo",
        "unknown_background": "soft",
    },
    "paper": {
        "strategy": "least_confidence",
        "pool_policy": "fixed",
        "query_min_score": 0.0,
        "noisy_targets": "frozen",
        "unknown_background": "full",
    },
}


class LoopSettings(Strict):
    loop: Literal["boxal", "paper"] = Field(
        "boxal",
        description="the defaults of the settings that make the loop: boxal (pool_policy refresh, "
        "query_min_score 0.5, noisy_targets pseudo, unknown_background soft, strategy least_confidence_bg: "
        "what boxal's pilots chose) or paper (fixed, 0, frozen, full, least_confidence: Desai & "
        "Balasubramanian's loop). A setting given alongside keeps its own value",
    )

    @model_validator(mode="before")
    @classmethod
    def _loop_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        chosen = LOOPS.get(str(data.get("loop", "boxal")), {})
        filled = {**chosen, **data}
        if filled.get("backend") == "detectron2" and "unknown_background" not in data:
            filled["unknown_background"] = "full"  # soft and ignore are the torchvision backend's
        return filled
