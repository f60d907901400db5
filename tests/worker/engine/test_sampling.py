"""A set share of every training batch from complete images (worker/engine/sampling.py, the project setting
``complete_share``): counted batch by batch while a real detector trains on 20 complete and 400 partly
labeled records, on one process and on two (DDP, gloo); and with the setting off, the batches are exactly
the uniform shuffle's."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from app.rounds.training_set import TargetBox, TrainingImage
from tests.factories import write_image
from worker.engine.config import EngineConfig, TrainConfig
from worker.engine.data import DetectionDataset, collate
from worker.engine.distributed import World
from worker.engine.launch import build
from worker.engine.presets import get_preset
from worker.engine.sampling import CompleteShareBatches
from worker.engine.train import _loader, train

STEPS, BATCH = 20, 4  # steps a real training runs; the share's statistics come from the sampler's own
COMPLETE, PARTIAL = 0, 1  # the class of each record's one box tells which it is


def _config(share: float | None, steps: int = STEPS) -> TrainConfig:
    return TrainConfig(
        epochs=1, lr=0.001, batch_size=BATCH, lr_steps=(), warmup_iters=0, iterations=steps,
        hflip=False, complete_share=share,
    )  # fmt: skip


def _records(folder: Path) -> list[TrainingImage]:
    """20 complete and 400 partly labeled 32 px images, each with one box whose x1 is its index."""
    image = write_image(folder / "img.png", 32, 32)
    records = []
    for i in range(420):
        complete = i % 21 == 0  # spread through the list, as a round's training set orders by image id
        box = TargetBox([float(i % 8), 2.0, 20.0, 24.0], COMPLETE if complete else PARTIAL)
        records.append(TrainingImage(str(image), boxes=[box], width=32, height=32, complete=complete))
    assert sum(r.complete for r in records) == 20
    return records


def _counting(share: float | None, records: list[TrainingImage]) -> list[int]:
    """Train for STEPS steps; the complete images of each batch, as the loss saw them."""
    engine = EngineConfig(get_preset("faster_rcnn_r18_fpn_lite"), 2, "none", 32, 32, 0.05, _config(share))
    detector = build(engine, "anchor_weights")
    seen: list[int] = []
    losses = detector.losses

    def counted(images, targets):  # type: ignore[no-untyped-def]
        seen.append(sum(int(t["labels"][0]) == COMPLETE for t in targets))
        return losses(images, targets)

    detector.losses = counted  # type: ignore[method-assign]
    train(detector, records, engine.train)
    assert len(seen) == STEPS
    return seen


def _within_binomial(counts: list[int], share: float, batches: int) -> None:
    slots = batches * BATCH
    expected, spread = share * slots, math.sqrt(slots * share * (1 - share))
    assert abs(sum(counts) - expected) <= 4 * spread + 1, (sum(counts), expected, spread)


def test_a_set_share_of_every_batch_is_complete_images_on_one_process(tmp_path: Path) -> None:
    records = _records(tmp_path)
    half = _counting(0.5, records)
    assert set(half) == {2}  # 0.5 of 4 slots: exactly two in every batch, not only on average
    odd = _counting(0.3, records)  # 1.2 slots: one always, a second one time in five
    assert set(odd) <= {1, 2}
    uniform = _counting(None, records)  # today's: about one slot in twenty-one
    assert sum(uniform) < sum(half) / 4
    # the same sampler over many more batches than a test can train: the share within binomial error
    complete = {i for i, r in enumerate(records) if r.complete}
    sampler = _loader(records, _config(0.3), torch.Generator().manual_seed(1), World()).batch_sampler
    assert isinstance(sampler, CompleteShareBatches)
    sampler.batches = 2000
    _within_binomial([sum(i in complete for i in batch) for batch in sampler], 0.3, 2000)


def test_with_the_setting_off_the_batches_are_the_uniform_shuffle(tmp_path: Path) -> None:
    """The loader the training loop built before complete_share existed, batch for batch."""
    records = _records(tmp_path)
    dataset = DetectionDataset(records, hflip=False)
    seeded = torch.Generator().manual_seed(0)
    today = DataLoader(
        dataset, batch_size=BATCH, shuffle=True, collate_fn=collate, generator=seeded, num_workers=0,
        drop_last=True,
    )  # fmt: skip
    loader = _loader(records, _config(None), torch.Generator().manual_seed(0), World())
    for n, ((_, got), (_, expected)) in enumerate(zip(loader, today, strict=True)):
        if n == 20:
            break
        assert [t["boxes"].tolist() for t in got] == [t["boxes"].tolist() for t in expected]
        assert [t["labels"].tolist() for t in got] == [t["labels"].tolist() for t in expected]


def _rank(rank: int, port: int, records: list[TrainingImage], out: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
    torch.set_num_threads(1)
    counts = _counting(0.3, records)
    (out / f"rank{rank}.json").write_text(json.dumps(counts))
    torch.distributed.destroy_process_group()


def test_under_ddp_each_process_keeps_the_share(tmp_path: Path) -> None:
    records = _records(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_rank, args=(port, records, tmp_path), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] != ranks[1]  # each process draws its own batches
    for counts in ranks:
        assert set(counts) <= {1, 2} and len(counts) == STEPS
