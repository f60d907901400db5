"""One round's training on several processes: the worker writes a job file, runs torchrun on this module
(`BOXAL_TRAIN_PROCESSES` processes, one per GPU), follows rank 0's progress and takes its model.

The processes come from torchrun, a subprocess of their own (the worker's task threads start no
multiprocessing children). Each rank builds the same detector from the same seed, trains with DDP
(worker/engine/distributed.py) and rank 0 writes the trained model's state; checkpoints and resume work as
on one process (the same directory and format).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from worker.engine.config import EngineConfig
from worker.engine.detector import Detector, build_detector
from worker.engine.losses import Reading
from worker.engine.train import Progress, load_checkpoint, save_checkpoint, seed_everything, train

JOB, PROGRESS, RESULT = "ddp-job.pt", "ddp-progress.json", "ddp-result.pt"
STOP_S = 10.0  # how long torchrun gets to stop its ranks before it is killed


def build(config: EngineConfig, reading: Reading) -> Detector:
    seed_everything(config.train.seed)  # the initial weights depend only on the seed, on every rank
    return build_detector(
        config.preset,
        config.num_classes,
        weights=config.weights,
        min_size=config.min_size,
        max_size=config.max_size,
        reading=reading,
        backend=config.backend,
        config=config.detectron2_config,
    )


def train_on_processes(
    processes: int,
    detector: Detector,
    job: dict[str, Any],
    folder: Path,
    on_progress: Callable[[Progress], None],
    poll_s: float = 2.0,
) -> int:
    """Run torchrun with ``processes`` ranks on ``job`` (records, config, reading, warm_start, extra), load
    the trained weights into ``detector``; returns the epoch it resumed from."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (folder / PROGRESS, folder / RESULT):
        stale.unlink(missing_ok=True)
    save_checkpoint(folder / JOB, job)
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        "-m",
        "worker.engine.launch",
        str(folder),
    ]
    with (folder / "ddp.log").open("ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            seen = 0.0
            while child.poll() is None:
                time.sleep(poll_s)
                path = folder / PROGRESS
                if path.is_file() and path.stat().st_mtime > seen:
                    seen = path.stat().st_mtime
                    on_progress(Progress(**json.loads(path.read_text())))
        except BaseException:  # a time limit, a failed heartbeat: torchrun stops its ranks on SIGTERM
            child.terminate()
            try:
                child.wait(timeout=STOP_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise
    if child.returncode != 0 or not (folder / RESULT).is_file():
        tail = (folder / "ddp.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"training on {processes} processes failed (exit {child.returncode}): {tail}")
    result = load_checkpoint(folder / RESULT)
    detector.model.load_state_dict(result["model"])
    return int(result["resumed_from_epoch"])


def _rank_main(folder: Path) -> None:
    job = load_checkpoint(folder / JOB)
    config: EngineConfig = job["config"]
    detector = build(config, job["reading"])

    def report(p: Progress) -> None:  # rank 0 only (train() calls it there)
        tmp = folder / (PROGRESS + ".tmp")
        tmp.write_text(json.dumps(asdict(p)))
        tmp.replace(folder / PROGRESS)

    result = train(
        detector,
        job["records"],
        config.train,
        checkpoint_dir=folder,
        warm_start=job["warm_start"],
        progress=report,
        extra=job["extra"],
    )
    grouped = torch.distributed.is_initialized()
    if not grouped or torch.distributed.get_rank() == 0:
        save_checkpoint(
            folder / RESULT,
            {"model": detector.model.state_dict(), "resumed_from_epoch": result.resumed_from_epoch},
        )
    if grouped:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _rank_main(Path(sys.argv[1]))
