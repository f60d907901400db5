"""Stage 1: train the round's model on its training set (or adopt a given initial model)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from app.jobs import service as jobs
from app.metrics import TRAINING_EPOCHS, TRAINING_LOSS
from app.rounds import results
from app.rounds.training_set import TrainingImage, training_set, with_noisy_mode
from worker import limits
from worker.context import WorkerContext
from worker.engine.config import EngineConfig
from worker.engine.detector import Detector
from worker.engine.inference import predict
from worker.engine.launch import build, train_on_processes
from worker.engine.refresh import refresh
from worker.engine.train import Progress, train
from worker.stages.job import RoundRef, Skip, claim, load, progress

HEARTBEAT_EVERY_S = 5.0


def train_round(ctx: WorkerContext, job_id: str) -> str:
    """Train, save the model under a new version, move the round on to scoring; returns the version."""
    ref = load(ctx, job_id)
    if ref.state != "training":
        raise Skip(f"round {ref.number} is {ref.state}, past training")
    claim(ctx, job_id, "training")
    if ref.number == 1 and ref.settings.initial_model:
        return _adopt_initial_model(ctx, ref, ref.settings.initial_model)
    settings = ref.settings
    with ctx.db.transaction(write=False) as session:
        records = training_set(
            session,
            ref.project_id,
            ref.snapshot_event_id,
            lambda_d=settings.lambda_d,
            images=settings.training_images,
        )
    noisy_from = "first predictions"
    if settings.noisy_targets in ("refreshed", "pseudo"):
        records, noisy_from = _refreshed(ctx, ref, records)
    records = [
        with_noisy_mode(
            r if r.complete else replace(r, unknown_background=settings.unknown_background),
            settings.noisy,
            settings.lambda_d,
        )
        for r in records
    ]
    config = EngineConfig.from_settings(
        settings, len(ref.classes), mixed_precision=ctx.settings.mixed_precision
    )
    detector = build(config, settings.loss_reading)  # seeded: a round's model depends only on its data
    model_version = ref.new_model_version
    progress(
        ctx,
        job_id,
        stage="training",
        model_version=model_version,
        noisy_from=noisy_from,
        processes=ctx.settings.train_processes,
        **_describe(records, config),
    )
    folder = ctx.artifacts.training(ref.round_id, job_id)
    warm_start = _previous_model(ctx, ref) if settings.warm_start else None
    extra = {"model_version": model_version}
    heartbeat = _heartbeat(ctx, job_id, ref.project_id)
    if ctx.settings.train_processes > 1:  # DDP over torchrun's processes (worker/engine/launch.py)
        resumed_from = train_on_processes(
            ctx.settings.train_processes,
            detector,
            {
                "records": records,
                "config": config,
                "reading": settings.loss_reading,
                "warm_start": warm_start,
                "extra": extra,
            },
            folder,
            heartbeat,
        )
    else:
        result = train(
            detector,
            records,
            config.train,
            checkpoint_dir=folder,
            warm_start=warm_start,
            progress=heartbeat,
            extra=extra,
        )
        resumed_from = result.resumed_from_epoch
    ctx.artifacts.save_model(model_version, _saved(detector, config, ref, model_version, resumed_from))
    _finish(ctx, ref, model_version, resumed_from_epoch=resumed_from)
    ctx.artifacts.drop_training(ref.round_id)  # the round is past training: nothing resumes it now
    return model_version


def _saved(
    detector: Detector, config: EngineConfig, ref: RoundRef, model_version: str, resumed_from: int
) -> dict[str, Any]:
    """A model version's file: its weights and what rebuilds it (WorkerContext.detector)."""
    return {
        "model": detector.model.state_dict(),
        "preset": config.preset.name,
        "num_classes": config.num_classes,
        "min_size": config.min_size,
        "max_size": config.max_size,
        "backend": config.backend,
        "detectron2_config": config.detectron2_config,
        "model_version": model_version,
        "project_id": ref.project_id,
        "round": ref.number,
        "config": config.to_dict(),
        "resumed_from_epoch": resumed_from,
    }


def _refreshed(
    ctx: WorkerContext, ref: RoundRef, records: list[TrainingImage]
) -> tuple[list[TrainingImage], str]:
    """Records whose noisy boxes the current model predicted afresh (engine/refresh.py), and that model;
    records of fully labeled images stay as they are."""
    with ctx.db.transaction(write=False) as session:
        current = results.previous_model(session, ref.project_id, ref.number)
    partial = [r for r in records if not r.complete]
    settings = ref.settings
    pseudo = settings.noisy_targets == "pseudo"
    if current is None or not partial:
        if pseudo:  # no model to take pseudo-labels from: the first predictions are not confident enough
            return [r if r.complete else replace(r, boxes=r.labeled) for r in records], "no model yet"
        return records, "first predictions"
    found = predict(ctx.detector(current), [r.path for r in partial], settings.t_d)
    confidence = settings.pseudo_label_score if pseudo else settings.refresh_confidence
    fresh = {
        id(r): refresh(
            r,
            f,
            t_d=settings.t_d,
            confidence=confidence,
            lambda_d=settings.lambda_d,
            uncertain="unknown" if pseudo else "ignore",
        )
        for r, f in zip(partial, found, strict=True)
    }
    return [fresh.get(id(r), r) for r in records], current


def _describe(records: list[TrainingImage], config: EngineConfig) -> dict[str, Any]:
    return {
        "images": len(records),
        "labeled_boxes": sum(len(r.labeled) for r in records),
        "noisy_boxes": sum(len(r.noisy) for r in records),
        "negatives": sum(len(r.negatives) for r in records),
        "ignore_regions": sum(len(r.ignore) for r in records),
        "epochs": config.train.epochs,
    }


def _heartbeat(ctx: WorkerContext, job_id: str, project_id: int):  # type: ignore[no-untyped-def]
    """A progress callback that reports to the job at most every HEARTBEAT_EVERY_S seconds, and each
    epoch's mean loss to the metrics."""
    last_beat = [0.0]
    epoch_loss: list[float] = []

    def on_progress(p: Progress) -> None:
        limits.check()  # every step: past the soft time limit, training stops here
        epoch_loss.append(sum(p.losses.values()))
        if p.iteration == p.iterations:
            TRAINING_LOSS.labels(str(project_id)).set(sum(epoch_loss) / len(epoch_loss))
            TRAINING_EPOCHS.inc()
            epoch_loss.clear()
        now = time.monotonic()
        if now - last_beat[0] >= HEARTBEAT_EVERY_S or p.iteration == p.iterations:
            last_beat[0] = now
            progress(
                ctx,
                job_id,
                epoch=p.epoch,
                epochs=p.epochs,  # the schedule's passes (with iterations, the last one may be partial)
                iteration=p.iteration,
                iterations=p.iterations,
                step=p.step,
                steps=p.steps,
                loss=round(sum(p.losses.values()), 4),
                fraction=round(0.7 * p.step / max(1, p.steps), 4),
            )

    return on_progress


def _finish(ctx: WorkerContext, ref: RoundRef, model_version: str, **report: Any) -> None:
    with ctx.db.transaction() as session:
        results.training_finished(session, ref.round_id, model_version)
        jobs.job_progress(session, ref.job_id, stage="scoring", **report)


def _adopt_initial_model(ctx: WorkerContext, ref: RoundRef, model_version: str) -> str:
    path = ctx.artifacts.model(model_version)
    if not path.is_file():
        raise ValueError(f"initial_model {model_version!r} is not in the artifact store ({path})")
    num_classes = torch.load(path, map_location="cpu", weights_only=False)["num_classes"]
    if num_classes != len(ref.classes):
        raise ValueError(
            f"initial_model {model_version!r} has {num_classes} classes; the project has {len(ref.classes)}"
        )
    _finish(ctx, ref, model_version, initial_model=model_version)
    return model_version


def _previous_model(ctx: WorkerContext, ref: RoundRef) -> Any:
    with ctx.db.transaction(write=False) as session:
        previous = results.previous_model(session, ref.project_id, ref.number)
    if previous is None or not ctx.artifacts.model(previous).is_file():
        return None
    return ctx.artifacts.model(previous)
