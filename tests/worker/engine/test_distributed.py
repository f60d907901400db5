"""Training on two processes (DDP on the gloo backend, CPU) takes the same step as one process on the same
global batch: the mean of the two processes' losses, each on its own share, with its own sampling seed.
Both ways a worker gets there: processes spawned here with torchrun's environment, and the round's own
launcher (torchrun as a subprocess, worker/engine/launch.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data import DistributedSampler

from worker.engine.config import EngineConfig, TrainConfig
from worker.engine.data import DetectionDataset, coco_items, collate
from worker.engine.launch import build, train_on_processes
from worker.engine.presets import get_preset
from worker.engine.train import LAST, Schedule, _Run, load_checkpoint, seed_everything, train

TRAIN = TrainConfig(epochs=1, lr=0.02, batch_size=2, lr_steps=(), warmup_iters=0, iterations=1, hflip=False)
CONFIG = EngineConfig(get_preset("faster_rcnn_r18_fpn_lite"), 10, "none", 96, 96, 0.05, TRAIN)
TOLERANCE = 1e-6  # on every parameter after the step; the step itself moves them by far more (checked)


def _rank(rank: int, port: int, items: list, out: Path) -> None:  # type: ignore[type-arg]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    train(build(CONFIG, "anchor_weights"), items, TRAIN, checkpoint_dir=out)
    torch.distributed.destroy_process_group()


def _parameters(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    names = dict(model.named_parameters())
    return {k: v for k, v in state.items() if k in names}


def _single_process_step(items: list, shares: tuple[int, ...]) -> dict[str, torch.Tensor]:  # type: ignore[type-arg]
    """One step of one process on the shares' batches, each as its process sees it (its indices, its
    sampling seed), on the mean of their losses."""
    torch.set_num_threads(1)  # as each process ran: the same kernels, the same float sums
    detector = build(CONFIG, "anchor_weights")
    dataset = DetectionDataset(items, hflip=False)
    run = _Run(detector, TRAIN, torch.device("cpu"), Schedule.of(TRAIN, per_epoch=1))
    detector.model.train()
    run.optimizer.zero_grad(set_to_none=True)
    for rank in shares:
        sampler = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=TRAIN.seed)
        images, targets = collate([dataset[i] for i in list(sampler)[: TRAIN.batch_size]])
        seed_everything(TRAIN.seed + rank)
        loss = sum(detector.losses(images, targets).values())
        (loss / len(shares)).backward()
    torch.nn.utils.clip_grad_norm_(run.params, TRAIN.clip_grad_norm)
    run.optimizer.step()
    return _parameters(detector.model, detector.model.state_dict())


def _apart(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max((a[k] - v).abs().max().item() for k, v in b.items())


def test_two_processes_take_the_single_process_step_on_the_global_batch(digit_scenes, tmp_path: Path) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    items = items[:4]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank, args=(port, items, tmp_path), nprocs=2, join=True)
    distributed = load_checkpoint(tmp_path / LAST)["model"]  # rank 0's, in the single-process format

    initial = _parameters(
        build(CONFIG, "anchor_weights").model, build(CONFIG, "anchor_weights").model.state_dict()
    )
    reference = _single_process_step(items, (0, 1))
    worst, moved = _apart(distributed, reference), _apart(initial, reference)
    one_share = _apart(_single_process_step(items, (0,)), reference)
    print(f"\nDDP vs one process: {worst:.2e} (the step: {moved:.2e}; one share only: {one_share:.2e})")
    assert worst < TOLERANCE, f"parameters differ by up to {worst:.2e} (the step moved them {moved:.2e})"
    assert moved > 1e3 * TOLERANCE and one_share > 10 * TOLERANCE  # a real step, shaped by both shares


def test_a_round_trains_on_two_processes_through_torchrun(digit_scenes, tmp_path: Path) -> None:
    _, items = coco_items(digit_scenes.train_json, digit_scenes.images)
    items = items[:4]
    detector = build(CONFIG, "anchor_weights")
    seen = []
    job = {"records": items, "config": CONFIG, "reading": "anchor_weights", "warm_start": None}
    resumed = train_on_processes(
        2, detector, {**job, "extra": {"model_version": "v-ddp"}}, tmp_path, seen.append, poll_s=0.2
    )
    trained = _parameters(detector.model, detector.model.state_dict())
    assert resumed == 0 and [p.iteration for p in seen][-1:] == [1]  # rank 0's progress reached the worker
    assert load_checkpoint(tmp_path / LAST)["model_version"] == "v-ddp"  # the usual checkpoint, resumable
    assert _apart(trained, _single_process_step(items, (0, 1))) < TOLERANCE
