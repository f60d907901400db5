"""The experiment runner: arms (unit x strategy) x seeds against a boxal server, over its REST API.

Per seed: one project trains the initial model on a random initial labeled set; every arm is a
project of its own that adopts that model for round 1 (settings.initial_model), as the paper shares
one baseline across methods. Each arm then serves queries that the oracle answers until the round
closes (round_size answers), waits for the next model, and records the round's curve point.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oracle.answers import Oracle
from oracle.client import BoxalClient, BoxalError
from oracle.cost import CostModel
from oracle.datasets import Dataset, ImageRecord

LEASE_BATCH = 50


@dataclass(frozen=True)
class Arm:
    unit: str  # box | image
    strategy: str
    reduction: str = "mean"

    @property
    def name(self) -> str:
        return f"{self.unit}/{self.strategy}"


@dataclass
class Experiment:
    name: str
    arms: list[Arm]
    seeds: list[int]
    initial_images: int
    rounds: int
    box_round: int  # box queries per round (the paper's K)
    image_round: int  # image queries per round
    settings: dict[str, Any] = field(default_factory=dict)  # project settings shared by every arm
    initial_settings: dict[str, Any] = field(default_factory=dict)  # overrides for the initial model
    full_supervision: bool = False  # also train once on every pool box: the fully supervised reference
    cost: CostModel = field(default_factory=CostModel)


Row = dict[str, Any]
Reporter = Callable[[str, dict[str, Any]], None]


def _coco(images: list[ImageRecord], classes: list[str]) -> dict[str, Any]:
    index = {name: i + 1 for i, name in enumerate(classes)}
    annotations = []
    for im in images:
        for gt in im.truth:
            x1, y1, x2, y2 = gt.bbox
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": im.external_id,
                    "category_id": index[gt.label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                }
            )
    return {
        "images": [
            {"id": im.external_id, "file_name": im.path.name, "width": im.width, "height": im.height}
            for im in images
        ],
        "categories": [{"id": i, "name": n} for n, i in index.items()],
        "annotations": annotations,
    }


class Runner:
    def __init__(
        self,
        client: BoxalClient,
        dataset: Dataset,
        experiment: Experiment,
        out: Path,
        report: Reporter | None = None,
    ) -> None:
        self.client = client
        self.dataset = dataset
        self.experiment = experiment
        self.out = out
        self.report = report or (lambda event, data: None)
        self.rows: list[Row] = []
        self.tag = f"{experiment.name}-{int(time.time())}"

    def _project(self, name: str, settings: dict[str, Any], labeled: list[ImageRecord]) -> int:
        project = self.client.create_project(f"{self.tag}-{name}", self.dataset.classes, settings)
        pid = project["id"]
        images = [
            {
                "uri": f"file://{im.path.resolve()}",
                "split": split,
                "external_id": im.external_id,
                "width": im.width,
                "height": im.height,
            }
            for split, records in (("pool", self.dataset.pool), ("test", self.dataset.test))
            for im in records
        ]
        self.client.register_images(pid, images)
        if self.dataset.test:
            self.client.import_coco(pid, _coco(self.dataset.test, self.dataset.classes))
        if labeled:
            self.client.import_coco(pid, _coco(labeled, self.dataset.classes))
        return pid

    def _wait(self, arm: str, job_id: str) -> dict[str, Any]:
        job = self.client.wait_job(job_id, on_progress=lambda j: self.report("job", {"arm": arm, "job": j}))
        if job["state"] != "succeeded":
            raise BoxalError(f"{arm}: round job {job_id} failed: {job.get('error')}")
        return job

    def _record(self, arm: str, unit: str, strategy: str, seed: int, pid: int, started: float) -> None:
        points = {p["round"]: p for p in self.client.curve(pid)}
        known = {(r["arm"], r["seed"], r["round"]) for r in self.rows}
        for number, point in sorted(points.items()):
            if (arm, seed, number) in known:
                continue
            row = {
                "experiment": self.experiment.name,
                "dataset": self.dataset.name,
                "arm": arm,
                "unit": unit,
                "strategy": strategy,
                "seed": seed,
                **point,
                "wall_s": round(time.monotonic() - started, 1),
            }
            self.rows.append(row)
            with (self.out / "rounds.jsonl").open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            self.report("point", row)

    def run(self) -> list[Row]:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "rounds.jsonl").write_text("")
        (self.out / "experiment.json").write_text(
            json.dumps(
                {
                    **asdict(self.experiment),
                    "dataset": self.dataset.name,
                    "pool_images": len(self.dataset.pool),
                    "pool_boxes": self.dataset.pool_boxes,
                    "test_images": len(self.dataset.test),
                },
                indent=2,
                default=str,
            )
        )
        for seed in self.experiment.seeds:
            self.run_seed(seed)
        return self.rows

    def run_seed(self, seed: int) -> None:
        experiment = self.experiment
        rng = random.Random(seed)
        initial = rng.sample(self.dataset.pool, min(experiment.initial_images, len(self.dataset.pool)))
        base = {**experiment.settings, "seed": seed}
        started = time.monotonic()
        init_pid = self._project(f"s{seed}-initial", {**base, **experiment.initial_settings}, initial)
        job = self.client.start_round(init_pid)
        self._wait("initial", job["job_id"])
        initial_model = self.client.rounds(init_pid)[1]["model_version"]
        self._record("initial", "-", "-", seed, init_pid, started)
        for arm in experiment.arms:
            self.run_arm(arm, seed, initial, initial_model)
        if experiment.full_supervision:
            started = time.monotonic()
            pid = self._project(f"s{seed}-full", {**base, **experiment.initial_settings}, self.dataset.pool)
            self._wait("full", self.client.start_round(pid)["job_id"])
            self._record("full", "-", "-", seed, pid, started)

    def run_arm(self, arm: Arm, seed: int, initial: list[ImageRecord], initial_model: str) -> None:
        experiment = self.experiment
        per_round = experiment.box_round if arm.unit == "box" else experiment.image_round
        settings = {
            **experiment.settings,
            "seed": seed,
            "unit": arm.unit,
            "strategy": arm.strategy,
            "reduction": arm.reduction,
            "round_size": per_round,
            "initial_model": initial_model,
        }
        started = time.monotonic()
        pid = self._project(f"s{seed}-{arm.unit}-{arm.strategy}", settings, initial)
        oracle = Oracle({im.external_id: im.truth for im in self.dataset.pool}, experiment.cost)
        for im in initial:
            oracle.mark_labeled(im.external_id)
        self._wait(arm.name, self.client.start_round(pid)["job_id"])
        self._record(arm.name, arm.unit, arm.strategy, seed, pid, started)
        for _ in range(experiment.rounds):
            answered, next_job = 0, None
            while next_job is None:
                queries = self.client.lease(pid, min(LEASE_BATCH, per_round - answered), "oracle", arm.unit)
                if not queries:
                    break  # the pool is exhausted
                result = self.client.answer(pid, [oracle.answer(q) for q in queries])
                answered += len(queries)
                self.report("answers", {"arm": arm.name, "answered": answered, "of": per_round})
                if result["round_started"]:
                    next_job = self.client.rounds(pid)[-1]["job_id"]
            if next_job is None:
                if answered == 0:
                    return
                next_job = self.client.start_round(pid)["job_id"]  # a last, smaller round
            self._wait(arm.name, next_job)
            self._record(arm.name, arm.unit, arm.strategy, seed, pid, started)
