"""Engine configuration, resolved from a project's settings and its model preset."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from app.projects.schemas import ProjectSettings
from worker.engine.presets import Preset, get_preset


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int
    lr_steps: tuple[int, ...]
    warmup_iters: int
    iterations: int | None = None  # optimizer steps in all; None: epochs x batches per epoch
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    hflip: bool = True
    clip_grad_norm: float | None = 10.0
    device: str = "auto"  # auto: CUDA when available, else CPU
    amp: bool = True  # mixed precision, CUDA only
    complete_share: float | None = None  # share of every batch from complete images; None: uniform


@dataclass(frozen=True)
class EngineConfig:
    preset: Preset
    num_classes: int
    weights: str  # where the detector starts: none, imagenet, coco or a file (worker/engine/weights.py)
    min_size: int
    max_size: int
    t_d: float
    train: TrainConfig
    backend: str = "torchvision"  # or detectron2 (worker/engine/d2/)
    detectron2_config: str | None = None  # backend detectron2: its config (d2/config.py)

    @classmethod
    def from_settings(
        cls, settings: ProjectSettings, num_classes: int, *, mixed_precision: bool = True
    ) -> EngineConfig:
        preset = get_preset(settings.model)
        return cls(
            preset=preset,
            num_classes=num_classes,
            weights=settings.weights or ("imagenet" if _pretrained(settings, preset) else "none"),
            min_size=settings.min_size or preset.min_size,
            max_size=settings.max_size or preset.max_size,
            t_d=settings.t_d,
            train=TrainConfig(
                epochs=settings.epochs or preset.epochs,
                lr=settings.lr or preset.lr,
                batch_size=settings.batch_size or preset.batch_size,
                lr_steps=preset.lr_steps
                if settings.epochs is None
                else tuple(max(1, round(s * settings.epochs / preset.epochs)) for s in preset.lr_steps),
                warmup_iters=preset.warmup_iters,
                iterations=settings.iterations,
                seed=settings.seed,
                amp=mixed_precision,
                complete_share=settings.complete_share,
            ),
            backend=settings.backend,
            detectron2_config=settings.detectron2_config,
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["preset"] = self.preset.name
        return out


def _pretrained(settings: ProjectSettings, preset: Preset) -> bool:
    return preset.pretrained if settings.pretrained is None else settings.pretrained
