"""`boxal simulate`: run an experiment against a server given by URL, or an embedded one it starts."""

from __future__ import annotations

import json
import resource
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from boxal.client import Client
from boxal.watchdog import PAUSED, STALL_S, Watchdog
from oracle import provenance
from oracle.datasets import Dataset
from oracle.experiment import Experiment, Runner
from oracle.presets import PRESETS
from oracle.report import write_all
from oracle.server import embedded_server

console = Console()
BACKENDS = ("torchvision", "detectron2")  # the project setting's values (the oracle never imports app/)


@contextmanager
def given_server(url: str, token: str | None) -> Iterator[tuple[str, str | None]]:
    yield url, token


def simulate(
    preset: str,
    *,
    url: str | None,
    out: Path,
    seeds: list[int] | None,
    data: Path | None,
    token: str | None,
    rounds: int | None,
    initial_images: int | None = None,
    smoke: bool = False,
    only: list[str] | None = None,
    backend: str | None = None,
    settings: dict[str, Any] | None = None,
    stall_s: float = STALL_S,
) -> Path:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    chosen = PRESETS[preset]
    experiment = chosen.experiment()
    if seeds:
        experiment.seeds = seeds
    if rounds is not None:
        experiment.rounds = rounds
    if initial_images is not None:
        experiment.initial_images = initial_images  # recorded: runs merge only with alike
    if only:
        experiment.only(only)  # unknown arm names fail before any work
    if backend is not None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        experiment.settings = {**experiment.settings, "backend": backend}  # recorded: runs merge only alike
    if settings:
        experiment.settings = {**experiment.settings, **settings}
    out.mkdir(parents=True, exist_ok=True)
    with console.status(f"preparing the {preset} data set"):
        dataset = chosen.dataset(data, out)
    if experiment.initial_images >= len(dataset.pool):
        raise ValueError(
            f"{experiment.initial_images} initial images leave none of the pool's {len(dataset.pool)} "
            "to query: choose fewer"
        )
    if smoke:
        dataset, experiment = miniature(dataset, experiment)
    whole = experiment  # what experiment.json records; a run of some arms says which it ran
    if only:
        experiment = experiment.only(only)
    console.print(
        f"[bold]{preset}[/]: {chosen.description}\n{len(dataset.pool)} pool images "
        f"({dataset.pool_boxes} boxes), {len(dataset.test)} test images; arms "
        f"{', '.join(experiment.arm_names())}; seeds {experiment.seeds}"
    )
    args = [a for a in sys.argv[2:] if a not in (token or "")]
    command = (
        "boxal simulate " + " ".join(shlex.quote(a) for a in args)
        if args
        else f"boxal simulate --preset {preset}"
    )
    started = time.monotonic()
    server = (
        embedded_server(out / "server", image_root=dataset.root, log=out / "server.log")
        if url is None
        else given_server(url, token)
    )
    with (
        server as (server_url, server_token),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
    ):
        client = Client(server_url, token=server_token)
        arms = ["initial"] * bool(experiment.arms or experiment.control) + experiment.arm_names()
        totals = {"initial": experiment.initial_rounds, "full": experiment.full_rounds}
        tasks = {
            (arm, seed): progress.add_task(
                f"seed {seed} {arm}", total=totals.get(arm, experiment.rounds + 1), status="waiting"
            )
            for seed in experiment.seeds
            for arm in arms
        }

        def report(event: str, payload: dict) -> None:
            if event == "point":
                key = (payload["arm"], payload["seed"])
                if key in tasks:
                    progress.update(
                        tasks[key],
                        advance=1,
                        status=f"mAP@0.5 {payload['map50']:.3f} at {payload['boxes_obtained']} boxes",
                    )
            elif event == "job":
                job = payload["job"]
                stage = job.get("progress", {}).get("stage", job["state"])
                if payload.get("worker_paused"):
                    stage = PAUSED
                for (arm, _), task in tasks.items():
                    if arm == payload["arm"] and not progress.tasks[task].finished:
                        progress.update(task, status=stage)
                        break

        log = out / "server.log"
        where = f"the server's log {log}" if url is None else f"the log of {server_url}'s worker"
        runner = Runner(
            client,
            dataset,
            experiment,
            out,
            report,
            whole=whole,
            watchdog=lambda: Watchdog(client.health, where, stall_s=stall_s),
        )
        try:
            rows = runner.run()
        finally:
            client.close()
    run = {
        "command": command,
        "cpu_s": round(_cpu_seconds(), 1) if url is None else None,  # a remote server's is not ours to see
        "wall_s": round(time.monotonic() - started, 1),
        "machine": provenance.machine(),
    }
    spec = {**json.loads((out / "experiment.json").read_text()), "runs": [run]}
    (out / "experiment.json").write_text(json.dumps(spec, indent=2, default=str))
    title = f"{preset}: box vs image queries ({dataset.name})"
    write_all(rows, out, title, [run], dataset.pool_boxes, spec)
    console.print(
        f"done in {run['wall_s']:.0f} s ({(run['cpu_s'] or 0) / 3600:.1f} CPU hours): {out / 'summary.md'}"
    )
    return out


def overrides(pairs: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as settings: VALUE as JSON (numbers, true, null, lists), else as text.
    The server validates them when the first project is made, before any training."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set min_size=512")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def miniature(dataset: Dataset, experiment: Experiment) -> tuple[Dataset, Experiment]:
    """The preset at toy size, every arm and code path kept: that its command runs (CI runs each
    published command so), not what it measures."""
    small = replace(dataset, pool=dataset.pool[:12], test=dataset.test[:4])
    settings = {**experiment.settings, "iterations": 2, "min_size": 64, "max_size": 96}
    tiny = replace(
        experiment,
        seeds=experiment.seeds[:1],
        rounds=1,
        initial_images=min(experiment.initial_images, 4),
        box_round=min(experiment.box_round, 6),
        image_round=min(experiment.image_round, 2),
        round_boxes=None if experiment.round_boxes is None else 10,
        settings=settings,
        initial_settings={**experiment.initial_settings, "iterations": 4},
        full_settings={**experiment.full_settings, "iterations": 4},
        full_rounds=min(experiment.full_rounds, 2),
        initial_rounds=min(experiment.initial_rounds, 2),
    )
    return small, tiny


def _cpu_seconds() -> float:
    """CPU time of this process and of the server and worker it started (waited for, so counted)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
