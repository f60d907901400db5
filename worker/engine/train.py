"""The training loop: SGD with warmup and step decay, seeded, AMP on CUDA, checkpoints every epoch.

Training lasts ``epochs`` passes over the data, or exactly ``iterations`` optimizer steps when that is set
(the same for every project of an experiment, however many images each trains on); the learning-rate
steps, given in epochs of the preset's schedule, scale to the steps run. A checkpoint holds model,
optimizer, scheduler, config and epoch; training resumes from the last one it finds in its directory (a
worker killed mid-round loses at most one epoch).
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
from torch.utils.data import DataLoader, DistributedSampler

from app.rounds.training_set import TrainingImage
from worker.engine.config import TrainConfig
from worker.engine.data import DetectionDataset, collate
from worker.engine.detector import Detector
from worker.engine.distributed import World, join, process_gpu, replicated, unwrapped, world
from worker.engine.sampling import CompleteShareBatches

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
    step: int = 0  # optimizer steps taken in all, 1-based
    steps: int = 0  # the schedule's steps in all


@dataclass
class TrainResult:
    epochs_run: int
    resumed_from_epoch: int
    final_losses: dict[str, float]
    steps: int = 0  # optimizer steps the model has had in all, resumed ones included


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Schedule:
    """A run's length in optimizer steps, and when its learning rate changes."""

    per_epoch: int  # batches per pass over the data
    total: int  # optimizer steps in all
    decay_at: tuple[int, ...]  # steps after which the learning rate is multiplied by 0.1
    warmup: int  # steps of linear warmup from 0.001x

    @classmethod
    def of(cls, config: TrainConfig, per_epoch: int) -> Schedule:
        per_epoch = max(1, per_epoch)
        if config.iterations:
            total = config.iterations
            decay_at = tuple(round(total * step / config.epochs) for step in config.lr_steps)
        else:
            total = config.epochs * per_epoch
            decay_at = tuple(step * per_epoch for step in config.lr_steps)
        return cls(per_epoch, total, decay_at, min(config.warmup_iters, total // 3))

    @property
    def epochs(self) -> int:
        """Passes over the data, the last one possibly partial."""
        return math.ceil(self.total / self.per_epoch)


def lr_factor(step: int, schedule: Schedule) -> float:
    """Linear warmup from 0.001x over the warmup steps, then x0.1 after each decay step."""
    decay = 0.1 ** sum(1 for at in schedule.decay_at if step >= at)
    if step < schedule.warmup:
        return decay * (0.001 + (1 - 0.001) * step / schedule.warmup)
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
    records: list[TrainingImage],
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    warm_start: Path | None = None,
    progress: Callable[[Progress], None] | None = None,
    extra: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``detector`` in place on ``records`` (each box weighted as its record says); on several
    processes when torchrun started this one (worker/engine/distributed.py)."""
    if not records:
        raise ValueError("nothing to train on: no images")
    place = world()
    device = pick_device(config.device)
    if place.distributed and device.type == "cuda":
        device = process_gpu(place)  # one GPU per process; CPUs are shared
    join(place, device)
    seed_everything(config.seed + place.rank)  # each process draws its own anchor and RoI samples
    model = detector.model.to(device)
    generator = torch.Generator().manual_seed(config.seed)
    loader = _loader(records, config, generator, place)
    schedule = Schedule.of(config, len(loader))
    run = _Run(detector, config, device, schedule)
    start_epoch = run.resume(checkpoint_dir / LAST if checkpoint_dir else None, warm_start, generator)
    losses: dict[str, float] = {}
    step = start_epoch * schedule.per_epoch
    with replicated(detector, place, device):
        for epoch in range(start_epoch, schedule.epochs):
            model.train()
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(epoch)
            this_epoch = min(schedule.per_epoch, schedule.total - step)
            for iteration, (images, targets) in enumerate(loader, start=1):
                losses = run.step(images, targets, epoch, iteration)
                step += 1
                if progress is not None and place.main:
                    progress(
                        Progress(
                            epoch + 1,
                            schedule.epochs,
                            iteration,
                            this_epoch,
                            losses,
                            run.lr,
                            step,
                            schedule.total,
                        )
                    )
                if iteration == this_epoch:
                    break
            if checkpoint_dir is not None and place.main:
                run.checkpoint(checkpoint_dir / LAST, epoch + 1, extra)
            generator.manual_seed(config.seed + epoch + 1)
    model.eval()
    return TrainResult(
        epochs_run=schedule.epochs - start_epoch,
        resumed_from_epoch=start_epoch,
        final_losses=losses,
        steps=step,
    )


def _loader(
    records: list[TrainingImage], config: TrainConfig, generator: torch.Generator, place: World
) -> DataLoader:
    dataset = DetectionDataset(records, hflip=config.hflip)
    if config.complete_share is not None:  # a set share of every batch from complete images (sampling.py)
        # as many batches per epoch as the uniform loader has, so that an epoch lasts as long either way
        if place.distributed:
            batches = math.ceil((len(dataset) // place.size) / config.batch_size)
            own = torch.Generator().manual_seed(config.seed * 1000 + place.rank)  # each process its own draw
        else:
            batches = len(dataset) // config.batch_size if len(dataset) > config.batch_size else 1
            own = generator  # reseeded each epoch by the loop, as the uniform shuffle is
        balanced = CompleteShareBatches(
            [i for i, r in enumerate(records) if r.complete],
            [i for i, r in enumerate(records) if not r.complete],
            batch_size=config.batch_size,
            share=config.complete_share,
            batches=max(1, batches),
            generator=own,
        )
        return DataLoader(dataset, batch_sampler=balanced, collate_fn=collate, num_workers=0)
    if place.distributed:  # each process its own share of every epoch, the same shuffle on all of them
        sampler: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=place.size, rank=place.rank, shuffle=True, seed=config.seed, drop_last=True
        )
        return DataLoader(
            dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate, generator=generator
        )
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=collate,
        generator=generator,
        num_workers=0,
        drop_last=len(dataset) > config.batch_size,
    )


class _Run:
    """The optimiser, schedule and mixed-precision scaler of one training run, and one SGD step."""

    def __init__(self, detector: Detector, config: TrainConfig, device: torch.device, schedule: Schedule):
        self.detector, self.config, self.device = detector, config, device
        self.params = [p for p in detector.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(
            self.params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, schedule)
        )
        self.amp = config.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def resume(self, last: Path | None, warm_start: Path | None, generator: torch.Generator) -> int:
        """The epoch to start from: after the last checkpoint if there is one (else 0, from
        ``warm_start``'s weights when given)."""
        model = self.detector.model
        if last is not None and last.is_file():
            state = load_checkpoint(last, self.device)
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"])
            generator.manual_seed(self.config.seed + start_epoch)
            return start_epoch
        if warm_start is not None:
            model.load_state_dict(load_checkpoint(warm_start, self.device)["model"])
        return 0

    def step(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], epoch: int, iteration: int
    ) -> dict[str, float]:
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{key: value.to(self.device) for key, value in t.items()} for t in targets]
        with torch.autocast(self.device.type, enabled=self.amp):
            terms = self.detector.losses(images, targets)
        loss = sum(terms.values(), torch.zeros((), device=self.device))
        if not math.isfinite(float(loss.detach())):
            raise TrainingDiverged(
                f"the loss became {float(loss.detach())} at epoch {epoch + 1}, iteration {iteration}; "
                f"lower the learning rate (now {self.config.lr})"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.config.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {name: float(value.detach()) for name, value in terms.items()}

    def checkpoint(self, path: Path, epochs_done: int, extra: dict[str, Any] | None) -> None:
        save_checkpoint(
            path,
            {
                "model": unwrapped(self.detector.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "config": asdict(self.config),
                "epoch": epochs_done,
                **(extra or {}),
            },
        )
