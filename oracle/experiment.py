"""The experiment runner: arms (unit x strategy x settings) x seeds against a boxal server, over its REST API.

Per seed: one project trains the initial model on a random initial labeled set, by the reference's rule when
``initial_rounds`` > 1 (warm-started rounds until one adds less than ``full_tolerance`` of its best mAP@0.5:
a first model that has finished learning, so that the arms' curves measure labels, not training time);
every arm is a project of its own that adopts that model (the last round's) for round 1
(settings.initial_model), as the paper shares one baseline across methods. Each arm then serves queries
that the oracle answers until the round closes (its budget: answers, or boxes obtained), waits for the
next model, and records the round's curve point. With
``control``, a project that gets no new labels retrains for the same rounds and steps, so that a gain can
be told from extra training; with ``full_supervision``, a project with every pool box, trained to convergence
on a schedule of its own (rounds of ``full_settings`` steps until a round raises its best mAP@0.5 by less
than ``full_tolerance`` of it, at most ``full_rounds``), gives the yardstick every level is measured
against. An arm's cheap equal-step schedule is no yardstick: on a pool twenty times the initial set it is
a few passes over the data.

``only`` runs some of the experiment's arms (a long experiment made in parts, merged by ``boxal report``);
the initial model is trained whenever an arm or the control needs it.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from boxal.client import Client
from boxal.watchdog import Watchdog
from oracle.answers import ACCEPT_IOU, Oracle
from oracle.cost import CostModel
from oracle.datasets import Dataset, ImageRecord
from oracle.provenance import environment

LEASE_BATCH = 50


class RoundFailed(RuntimeError):
    """A round's job failed on the server: the experiment cannot go on."""


@dataclass(frozen=True)
class Arm:
    unit: str  # box | image
    strategy: str
    reduction: str = "mean"
    settings: dict[str, Any] = field(default_factory=dict)  # this arm's project settings besides the shared
    label: str | None = None  # the arm's name in reports; default unit/strategy

    @property
    def name(self) -> str:
        return self.label or f"{self.unit}/{self.strategy}"


@dataclass
class Experiment:
    name: str
    arms: list[Arm]
    seeds: list[int]
    initial_images: int
    rounds: int
    box_round: int  # box queries per round (the paper's K), when rounds close on answers
    image_round: int  # image queries per round, likewise
    settings: dict[str, Any] = field(default_factory=dict)  # project settings shared by every arm
    initial_settings: dict[str, Any] = field(default_factory=dict)  # overrides for the initial model
    round_boxes: int | None = None  # rounds close on boxes obtained, the same budget for every arm
    control: bool = False  # a project that gets no new labels, retrained every round
    full_supervision: bool = False  # a project with every pool box, trained to convergence: the yardstick
    full_settings: dict[str, Any] = field(default_factory=dict)  # the reference's round (over settings)
    full_rounds: int = 1  # the reference's rounds at most (warm-started when more than one)
    full_tolerance: float = 0.02  # it stops after a round that raises its best mAP@0.5 by under this share
    # the initial model trains by the same rule: warm-started rounds of initial_settings' steps until a
    # round adds less than full_tolerance to its best mAP@0.5, at most initial_rounds (1: one round)
    initial_rounds: int = 1
    cost: CostModel = field(default_factory=CostModel)
    accept_iou: float | None = ACCEPT_IOU  # the oracle accepts a right-class box at this IoU (None: never)
    rule: str | None = None  # a pilot's rule for choosing its arm, written before it runs (pilot_choice)

    def arm_names(self) -> list[str]:
        """Every arm a run of this experiment records besides the initial model, in the order run."""
        return [a.name for a in self.arms] + ["control"] * self.control + ["full"] * self.full_supervision

    def only(self, names: list[str]) -> Experiment:
        """The part of this experiment that runs the named arms (a run made apart from the others)."""
        unknown = sorted(set(names) - set(self.arm_names()))
        if unknown:
            raise ValueError(
                f"unknown arm {', '.join(unknown)}; this experiment's arms: {', '.join(self.arm_names())}"
            )
        return replace(
            self,
            arms=[a for a in self.arms if a.name in names],
            control=self.control and "control" in names,
            full_supervision=self.full_supervision and "full" in names,
        )


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
        client: Client,
        dataset: Dataset,
        experiment: Experiment,
        out: Path,
        report: Reporter | None = None,
        whole: Experiment | None = None,
        watchdog: Callable[[], Watchdog] | None = None,
    ) -> None:
        self.client = client
        self.dataset = dataset
        self.experiment = experiment
        self.whole = whole or experiment  # the experiment this run is part of
        self.out = out
        self.report = report or (lambda event, data: None)
        self.watchdog = watchdog  # a new one per job followed: raises when the server will not finish it
        self.rows: list[Row] = []
        self.tag = f"{experiment.name}-{int(time.time())}"

    # --- projects and rounds ----------------------------------------------------------------------

    def _project(
        self, name: str, settings: dict[str, Any], labeled: list[ImageRecord], pool: list[ImageRecord]
    ) -> int:
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
            for split, records in (("pool", pool), ("test", self.dataset.test))
            for im in records
        ]
        self.client.register_images(pid, images)
        if self.dataset.test:
            self.client.import_coco(pid, _coco(self.dataset.test, self.dataset.classes))
        if labeled:
            self.client.import_coco(pid, _coco(labeled, self.dataset.classes))
        return pid

    def _wait(self, arm: str, job_id: str) -> dict[str, Any]:
        watch = self.watchdog() if self.watchdog is not None else None

        def on_progress(job: dict[str, Any]) -> None:
            if watch is not None:
                watch(job)
            self.report("job", {"arm": arm, "job": job, "worker_paused": watch is not None and watch.paused})

        job = self.client.wait_job(job_id, on_progress=on_progress)
        if job["state"] != "succeeded":
            raise RoundFailed(f"{arm}: round job {job_id} failed: {job.get('error')}")
        return job

    def _record(self, arm: str, unit: str, strategy: str, seed: int, pid: int, started: float) -> None:
        points = {p["round"]: p for p in self.client.curve(pid)}
        known = {(r["arm"], r["seed"], r["round"]) for r in self.rows}
        for number, point in sorted(points.items()):
            if (arm, seed, number) in known:
                continue
            served, reason = point.pop("unit", None), point.pop("unit_reason", None)
            row = {
                "experiment": self.experiment.name,
                "dataset": self.dataset.name,
                "arm": arm,
                "unit": unit,
                "strategy": strategy,
                "seed": seed,
                **point,
                **({"unit_served": served, "unit_reason": reason} if served else {}),  # unit auto's choice
                "wall_s": round(time.monotonic() - started, 1),
            }
            self.rows.append(row)
            with (self.out / "rounds.jsonl").open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            self.report("point", row)

    def _retrain(self, arm: str, pid: int, seed: int, started: float) -> None:
        """Rounds without new labels, each training on from the last (warm start), as the arms' rounds do.
        Without warm start a round would compute the same model again: there is nothing to run."""
        if not self.experiment.settings.get("warm_start"):
            return
        for _ in range(self.experiment.rounds):
            self._wait(arm, self.client.start_round(pid)["job_id"])
            self._record(arm, "-", "-", seed, pid, started)

    # --- the run ---------------------------------------------------------------------------------------

    def run(self) -> list[Row]:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "rounds.jsonl").write_text("")
        (self.out / "experiment.json").write_text(
            json.dumps(
                {
                    **asdict(self.whole),
                    "ran": ["initial"] * bool(self.experiment.arms or self.experiment.control)
                    + self.experiment.arm_names(),
                    "dataset": self.dataset.name,
                    "pool_images": len(self.dataset.pool),
                    "pool_boxes": self.dataset.pool_boxes,
                    "test_images": len(self.dataset.test),
                    "environment": environment(),
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
        if experiment.arms or experiment.control:
            base = {**experiment.settings, "seed": seed}
            started = time.monotonic()
            initial_settings = {**base, **experiment.initial_settings}
            if experiment.initial_rounds > 1:
                initial_settings["warm_start"] = True  # each round trains on from the last
            init_pid = self._project(f"s{seed}-initial", initial_settings, initial, initial)
            self._converge("initial", init_pid, seed, started, experiment.initial_rounds)
            initial_model = self.client.rounds(init_pid)[-1]["model_version"]
            for arm in experiment.arms:
                self.run_arm(arm, seed, initial, initial_model)
            if experiment.control:
                self.run_control(seed, initial, initial_model)
        if experiment.full_supervision:
            self.run_full(seed)

    def run_control(self, seed: int, initial: list[ImageRecord], initial_model: str) -> None:
        """The initial set only, retrained each round as the arms are: what extra training alone gives."""
        started = time.monotonic()
        settings = {**self.experiment.settings, "seed": seed, "initial_model": initial_model}
        pid = self._project(f"s{seed}-control", settings, initial, initial)
        self._wait("control", self.client.start_round(pid)["job_id"])
        self._record("control", "-", "-", seed, pid, started)
        self._retrain("control", pid, seed, started)

    def run_full(self, seed: int) -> None:
        """Every pool box labeled, trained round after round (warm-started) until a round raises its best
        mAP@0.5 by less than the tolerance (a share of that best: a fixed step would stop a reference still
        near zero), or its rounds run out: the reference."""
        experiment = self.experiment
        started = time.monotonic()
        settings = {**experiment.settings, **experiment.full_settings, "seed": seed, "warm_start": True}
        pool = self.dataset.pool
        pid = self._project(f"s{seed}-full", settings, pool, pool)
        self._converge("full", pid, seed, started, experiment.full_rounds)

    def _converge(self, arm: str, pid: int, seed: int, started: float, most: int) -> None:
        """Rounds (warm-started) until one raises the best mAP@0.5 by less than the tolerance (a share of
        that best: a fixed step would stop a model still near zero), at most ``most``; each recorded."""
        best = None
        for _ in range(most):
            self._wait(arm, self.client.start_round(pid)["job_id"])
            self._record(arm, "-", "-", seed, pid, started)
            now = float(self.client.curve(pid)[-1]["map50"] or 0.0)
            if best is not None and now - best < self.experiment.full_tolerance * best:
                return
            best = now if best is None else max(best, now)

    def run_arm(self, arm: Arm, seed: int, initial: list[ImageRecord], initial_model: str) -> None:
        experiment = self.experiment
        settings = {
            **experiment.settings,
            **arm.settings,
            "seed": seed,
            "unit": arm.unit,
            "strategy": arm.strategy,
            "reduction": arm.reduction,
            "initial_model": initial_model,
            **self._budget(arm),
        }
        started = time.monotonic()
        pid = self._project(f"s{seed}-{arm.name.replace('/', '-')}", settings, initial, self.dataset.pool)
        truth = {im.external_id: im.truth for im in self.dataset.pool}
        oracle = Oracle(truth, experiment.cost, accept_iou=experiment.accept_iou)
        for im in initial:
            oracle.mark_labeled(im.external_id)
        self._wait(arm.name, self.client.start_round(pid)["job_id"])
        self._record(arm.name, arm.unit, arm.strategy, seed, pid, started)
        for _ in range(experiment.rounds):
            next_job = self._serve_round(arm, pid, oracle)
            if next_job is None:
                return  # the pool is exhausted
            self._wait(arm.name, next_job)
            self._record(arm.name, arm.unit, arm.strategy, seed, pid, started)

    def _budget(self, arm: Arm) -> dict[str, Any]:
        experiment = self.experiment
        if experiment.round_boxes is not None:
            return {"round_budget": "boxes", "round_size": experiment.round_boxes}
        return {"round_size": experiment.box_round if arm.unit == "box" else experiment.image_round}

    def _serve_round(self, arm: Arm, pid: int, oracle: Oracle) -> str | None:
        """Answer queries until the round closes; the next round's job id, or None if nothing was left.

        The lease names no unit, so a box arm whose box queries run out is served image queries, as any
        client would be. Near the end of a boxes budget, leases get smaller (an image query at a time)
        so that no round overshoots its budget by much."""
        answered, whole_images = 0, arm.unit in ("image", "review")  # auto: as its round's queries say
        while True:
            project = self.client.project(pid)
            size = project["settings"]["round_size"]
            boxes = project["settings"]["round_budget"] == "boxes"
            spent = project["boxes_this_round"] if boxes else project["answers_this_round"]
            k = 1 if boxes and whole_images else max(1, min(LEASE_BATCH, size - spent))
            queries = self.client.lease(pid, k, "oracle")
            if not queries:
                break
            if boxes and any(q["unit"] != "box" for q in queries):
                whole_images = True  # each obtains many boxes at once: one at a time from now on
                for extra in queries[1:]:
                    self.client.release(pid, extra["query_id"])
                queries = queries[:1]
            result = self.client.answer(pid, [oracle.answer(q) for q in queries])
            answered += len(queries)
            self.report("answers", {"arm": arm.name, "answered": answered})
            if result["round_started"]:
                return str(self.client.rounds(pid)[-1]["job_id"])
        if answered == 0:
            return None
        return str(self.client.start_round(pid, force=True)["job_id"])  # a last, smaller round
