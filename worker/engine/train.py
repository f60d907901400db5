"""The training loop: SGD with warmup and step decay, seeded, AMP on CUDA, checkpoints every epoch.

A checkpoint holds model, optimizer, scheduler, config and epoch; training resumes from the last one
it finds in its directory (a worker killed mid-round loses at most one epoch).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from worker.engine.config import TrainConfig
from worker.engine.data import DetectionDataset, Item, apply_noisy_mode, collate
from worker.engine.detector import Detector

LAST = "last.pt"


class TrainingDiverged(RuntimeError):
    pass


@dataclass
class Progress:
    epoch: int  # 1-based
    epochs: int
    iteration: int  # within the epoch, 1-based
    iterations: int
    losses: dict[str, float]
    lr: float


@dataclass
class TrainResult:
    epochs_run: int
    resumed_from_epoch: int
    final_losses: dict[str, float]


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_factor(iteration: int, per_epoch: int, config: TrainConfig) -> float:
    """Linear warmup from 0.001x over warmup_iters, then x0.1 after each epoch in lr_steps."""
    epoch = iteration // max(1, per_epoch)
    decay = 0.1 ** sum(1 for step in config.lr_steps if epoch >= step)
    warmup = min(config.warmup_iters, per_epoch * config.epochs // 3)
    if iteration < warmup:
        return decay * (0.001 + (1 - 0.001) * iteration / warmup)
    return decay


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    return torch.load(path, map_location=device, weights_only=False)


def train(
    detector: Detector,
    items: list[Item],
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    warm_start: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``detector`` in place on ``items`` (noisy boxes per ``config.noisy``)."""
    if not items:
        raise ValueError("nothing to train on: no images")
    device = pick_device(config.device)
    seed_everything(config.seed)
    model = detector.model.to(device)
    detector.set_lambda(config.lambda_d if config.noisy == "dampen" else 1.0)
    dataset = DetectionDataset([apply_noisy_mode(item, config.noisy) for item in items], hflip=config.hflip)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=generator,
        num_workers=0,
        drop_last=len(dataset) > config.batch_size,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    per_epoch = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, per_epoch, config))
    use_amp = config.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch = 0
    last = checkpoint_dir / LAST if checkpoint_dir else None
    if last is not None and last.is_file():
        state = load_checkpoint(last, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        generator.manual_seed(config.seed + start_epoch)
    elif warm_start is not None:
        model.load_state_dict(load_checkpoint(warm_start, device)["model"])

    losses: dict[str, float] = {}
    for epoch in range(start_epoch, config.epochs):
        model.train()
        for iteration, (images, targets) in enumerate(loader, start=1):
            images = [image.to(device, non_blocking=True) for image in images]
            targets = [
                detector.target(t["boxes"].to(device), t["labels"].to(device), t["noisy"].to(device))
                for t in targets
            ]
            with torch.autocast(device.type, enabled=use_amp):
                terms = detector.losses(images, targets)
            loss = sum(terms.values())
            if not math.isfinite(float(loss.detach())):
                raise TrainingDiverged(
                    f"the loss became {float(loss.detach())} at epoch {epoch + 1}, iteration {iteration}; "
                    f"lower the learning rate (now {config.lr})"
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.clip_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            losses = {name: float(value.detach()) for name, value in terms.items()}
            if progress is not None:
                progress(
                    Progress(
                        epoch + 1,
                        config.epochs,
                        iteration,
                        per_epoch,
                        losses,
                        optimizer.param_groups[0]["lr"],
                    )
                )
        if last is not None:
            save_checkpoint(
                last,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "config": asdict(config),
                    "epoch": epoch + 1,
                    **(extra or {}),
                },
            )
        generator.manual_seed(config.seed + epoch + 1)
    model.eval()
    return TrainResult(
        epochs_run=config.epochs - start_epoch, resumed_from_epoch=start_epoch, final_losses=losses
    )
