"""What each stage of a round does: train, score a shard of the pool, rank, evaluate.

Plain functions over ids (a job id, a shard index) that read and write the database through the app's
services and keep heavy arrays in the artifact store. Every stage is idempotent: run twice, it writes
nothing twice. worker/tasks.py wraps them as Celery tasks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
from sqlalchemy import func, select, update

from app.formats.geometry import iou
from app.models import Box, Image, Job, Project, Round, Shard, utcnow
from app.projects.schemas import ProjectSettings
from app.projects.service import project_settings
from app.rounds import service as rounds
from app.rounds.snapshot import training_set
from worker.context import WorkerContext
from worker.engine import strategies
from worker.engine.config import EngineConfig
from worker.engine.data import Item
from worker.engine.detector import build_detector
from worker.engine.evaluate import evaluate
from worker.engine.inference import predict, rescore
from worker.engine.train import Progress, seed_everything, train

log = logging.getLogger(__name__)

TASK_TRAIN = "boxal.round.train"
TASK_SCORE = "boxal.round.score"
TASK_RANK = "boxal.round.rank"
TASK_EVALUATE = "boxal.round.evaluate"
HEARTBEAT_EVERY_S = 5.0
MATCH_IOU = 0.5


class Skip(Exception):
    """Nothing for this task to do: the stage is past, or a live worker holds the job."""


@dataclass(frozen=True)
class RoundRef:
    job_id: str
    job_state: str
    round_id: int
    number: int
    state: str
    project_id: int
    classes: list[str]
    settings: ProjectSettings
    model_version: str | None
    snapshot_event_id: int
    metrics: dict[str, Any] | None

    @property
    def new_model_version(self) -> str:
        return f"p{self.project_id}-r{self.number}-{self.job_id[:8]}"


def load(ctx: WorkerContext, job_id: str) -> RoundRef:
    with ctx.db.transaction(write=False) as session:
        job = rounds.get_job(session, job_id)
        if job.round_id is None:
            raise Skip(f"job {job_id} is not a round job")
        round_ = rounds.get_round(session, job.round_id)
        project = session.get(Project, round_.project_id)
        assert project is not None
        return RoundRef(
            job.id,
            job.state,
            round_.id,
            round_.number,
            round_.state,
            project.id,
            list(project.classes),
            project_settings(project),
            round_.model_version,
            round_.snapshot_event_id or 0,
            round_.metrics,
        )


def route(ctx: WorkerContext, job_id: str) -> list[tuple[str, list[Any]]]:
    """The tasks that move a job on from where its round stands (start, and recovery after a crash)."""
    ref = load(ctx, job_id)
    if ref.job_state in ("succeeded", "failed"):
        return []
    if ref.state == "training":
        return [(TASK_TRAIN, [job_id])]
    if ref.state == "scoring":
        total, todo = plan_scoring(ctx, ref)
        if not todo:
            return [(TASK_RANK, [job_id])]
        return [(TASK_SCORE, [job_id, index, total]) for index in todo]
    if ref.state in ("open", "closed"):
        if ref.metrics is None:
            return [(TASK_EVALUATE, [job_id])]
        with ctx.db.transaction() as session:
            rounds.job_succeeded(session, job_id)
    return []


# --- claims and progress ------------------------------------------------------------------------------


def claim(ctx: WorkerContext, job_id: str, stage: str) -> None:
    """Take the job for a single-worker stage (training), unless a live worker already holds it."""
    stale = timedelta(seconds=ctx.settings.job_stale_s)
    with ctx.db.transaction() as session:
        job = rounds.get_job(session, job_id, for_update=True)
        if job.state in ("succeeded", "failed"):
            raise Skip(f"job {job_id} is {job.state}")
        holder_alive = (
            job.worker not in (None, ctx.token)
            and job.heartbeat_at is not None
            and utcnow() - job.heartbeat_at < stale
            and (job.progress or {}).get("stage") == stage
        )
        if holder_alive:
            raise Skip(f"job {job_id} is being {stage} by {job.worker}")
        rounds.job_started(session, job_id, ctx.token)
        rounds.job_progress(session, job_id, stage=stage)


def progress(ctx: WorkerContext, job_id: str, **fields: Any) -> None:
    with ctx.db.transaction() as session:
        rounds.job_progress(session, job_id, **fields)


def running(ctx: WorkerContext, job_id: str, stage: str) -> None:
    """Mark a job running at a multi-worker stage (scoring, ranking, evaluating)."""
    with ctx.db.transaction() as session:
        job = rounds.get_job(session, job_id, for_update=True)
        if job.state in ("succeeded", "failed"):
            raise Skip(f"job {job_id} is {job.state}")
        if job.state == "queued":
            rounds.job_started(session, job_id, ctx.token)
        rounds.job_progress(session, job_id, stage=stage)


# --- train ---------------------------------------------------------------------------------------------


def train_round(ctx: WorkerContext, job_id: str) -> str:
    ref = load(ctx, job_id)
    if ref.state != "training":
        raise Skip(f"round {ref.number} is {ref.state}, past training")
    claim(ctx, job_id, "training")
    if ref.number == 1 and ref.settings.initial_model:
        return _adopt_initial_model(ctx, ref, ref.settings.initial_model)
    with ctx.db.transaction(write=False) as session:
        images = training_set(session, ref.project_id, ref.snapshot_event_id)
    items = [
        Item(
            t.path,
            [b.bbox for b in t.boxes],
            [b.label for b in t.boxes],
            [b.noisy for b in t.boxes],
            image_id=t.image_id,
            width=t.width,
            height=t.height,
        )
        for t in images
    ]
    config = EngineConfig.from_settings(ref.settings, len(ref.classes))
    seed_everything(config.train.seed)  # the initial weights too: a round's model depends only on its data
    detector = build_detector(
        config.preset,
        config.num_classes,
        pretrained=config.pretrained,
        min_size=config.min_size,
        max_size=config.max_size,
    )
    model_version = ref.new_model_version
    warm = _previous_model(ctx, ref) if ref.settings.warm_start else None
    noisy = sum(b.noisy for t in images for b in t.boxes)
    labeled = sum(not b.noisy for t in images for b in t.boxes)
    progress(
        ctx,
        job_id,
        stage="training",
        images=len(items),
        labeled_boxes=labeled,
        noisy_boxes=noisy,
        model_version=model_version,
        epochs=config.train.epochs,
    )
    last_beat = [0.0]

    def on_progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last_beat[0] >= HEARTBEAT_EVERY_S or p.iteration == p.iterations:
            last_beat[0] = now
            done = ((p.epoch - 1) * p.iterations + p.iteration) / (p.epochs * p.iterations)
            progress(
                ctx,
                job_id,
                epoch=p.epoch,
                iteration=p.iteration,
                iterations=p.iterations,
                loss=round(sum(p.losses.values()), 4),
                fraction=round(0.7 * done, 4),
            )

    result = train(
        detector,
        items,
        config.train,
        checkpoint_dir=ctx.artifacts.training(ref.round_id, job_id),
        warm_start=warm,
        progress=on_progress,
        extra={"model_version": model_version},
    )
    ctx.artifacts.save_model(
        model_version,
        {
            "model": detector.model.state_dict(),
            "preset": config.preset.name,
            "num_classes": config.num_classes,
            "min_size": config.min_size,
            "max_size": config.max_size,
            "model_version": model_version,
            "project_id": ref.project_id,
            "round": ref.number,
            "config": config.to_dict(),
            "resumed_from_epoch": result.resumed_from_epoch,
        },
    )
    with ctx.db.transaction() as session:
        rounds.training_finished(session, ref.round_id, model_version)
        rounds.job_progress(session, job_id, stage="scoring", resumed_from_epoch=result.resumed_from_epoch)
    return model_version


def _adopt_initial_model(ctx: WorkerContext, ref: RoundRef, model_version: str) -> str:
    path = ctx.artifacts.model(model_version)
    if not path.is_file():
        raise ValueError(f"initial_model {model_version!r} is not in the artifact store ({path})")
    num_classes = torch.load(path, map_location="cpu", weights_only=False)["num_classes"]
    if num_classes != len(ref.classes):
        raise ValueError(
            f"initial_model {model_version!r} has {num_classes} classes; the project has {len(ref.classes)}"
        )
    with ctx.db.transaction() as session:
        rounds.training_finished(session, ref.round_id, model_version)
        rounds.job_progress(session, ref.job_id, stage="scoring", initial_model=model_version)
    return model_version


def _previous_model(ctx: WorkerContext, ref: RoundRef) -> Any:
    with ctx.db.transaction(write=False) as session:
        previous = session.scalar(
            select(Round.model_version)
            .where(
                Round.project_id == ref.project_id,
                Round.number < ref.number,
                Round.model_version.is_not(None),
            )
            .order_by(Round.number.desc())
        )
    if previous is None or not ctx.artifacts.model(previous).is_file():
        return None
    return ctx.artifacts.model(previous)


# --- score ---------------------------------------------------------------------------------------------


def plan_scoring(ctx: WorkerContext, ref: RoundRef) -> tuple[int, list[int]]:
    """Split the pool into shards (image id modulo total) once per round; the shards not done yet."""
    with ctx.db.transaction() as session:
        total = session.scalar(
            select(Shard.total).where(Shard.round_id == ref.round_id, Shard.stage == "score")
        )
        if total is None:
            pool = session.scalar(
                select(func.count()).where(Image.project_id == ref.project_id, Image.split == "pool")
            )
            total = max(1, -(-int(pool or 0) // ctx.settings.shard_images))
            rounds.plan_shards(session, ref.round_id, "score", total)
        done = rounds.shards_done(session, ref.round_id, "score")
    return total, [i for i in range(total) if i not in done]


@dataclass
class _ImageWork:
    image: Image
    predict: bool
    unlabeled: list[Box]
    labeled: list[Box]
    answered: list[Box]


def score_shard(ctx: WorkerContext, job_id: str, index: int, total: int) -> bool:
    """Predict or re-score one shard of the pool; stage scores and features. True if it was the last."""
    ref = load(ctx, job_id)
    if ref.state != "scoring" or ref.model_version is None:
        raise Skip(f"round {ref.number} is {ref.state}, not scoring")
    with ctx.db.transaction(write=False) as session:
        if index in rounds.shards_done(session, ref.round_id, "score"):
            raise Skip(f"shard {index} of round {ref.number} is done")
    running(ctx, job_id, "scoring")
    settings = ref.settings
    coreset = settings.strategy == "coreset"
    with ctx.db.transaction(write=False) as session:
        images = list(
            session.scalars(
                select(Image)
                .where(Image.project_id == ref.project_id, Image.split == "pool", Image.id % total == index)
                .order_by(Image.id)
            )
        )
        boxes: dict[int, list[Box]] = {image.id: [] for image in images}
        ids = list(boxes)
        for start in range(0, len(ids), 500):
            for box in session.scalars(
                select(Box).where(Box.image_id.in_(ids[start : start + 500])).order_by(Box.id)
            ):
                boxes[box.image_id].append(box)
    work = []
    for image in images:
        own = boxes[image.id]
        predict_now = not image.fully_labeled and (
            settings.pool_policy == "refresh" or image.predicted_round is None
        )
        unlabeled = [b for b in own if b.status == "unlabeled" and b.source == "predicted"]
        item = _ImageWork(
            image,
            predict_now,
            [] if predict_now else unlabeled,
            [b for b in own if b.status == "labeled"],
            [b for b in own if b.status != "unlabeled"],
        )
        needs_model = (
            item.predict or item.unlabeled or (coreset and (item.labeled or settings.unit == "image"))
        )
        if needs_model:
            work.append(item)
    detector = ctx.detector(ref.model_version)
    t_d = settings.t_d
    to_predict = [w for w in work if w.predict]
    detections = predict(detector, [w.image.path for w in to_predict], t_d) if to_predict else []
    to_rescore = [w for w in work if not w.predict or (coreset and w.labeled)]
    rescore_boxes = [
        torch.tensor(
            [
                b.bbox
                for b in (w.unlabeled if not w.predict else [])
                + (w.labeled if coreset and settings.unit == "box" else [])
            ],
            dtype=torch.float32,
        ).reshape(-1, 4)
        for w in to_rescore
    ]
    rescored = rescore(detector, [w.image.path for w in to_rescore], rescore_boxes) if to_rescore else []

    # pool policy refresh: new predictions overlapping an answered box are dropped
    kept = {
        w.image.id: [
            i
            for i in range(len(d.scores))
            if not any(iou(d.boxes[i].tolist(), a.bbox) >= MATCH_IOU for a in w.answered)
        ]
        for w, d in zip(to_predict, detections, strict=True)
    }
    predictions = {
        w.image.id: [
            {
                "bbox": d.boxes[i].tolist(),
                "label": int(d.labels[i]),
                "score": float(d.scores[i]),
                "probs": d.probs[i].tolist(),
            }
            for i in kept[w.image.id]
        ]
        for w, d in zip(to_predict, detections, strict=True)
    }
    with ctx.db.transaction() as session:
        new_ids = {
            image_id: rounds.record_predictions(session, ref.round_id, image_id, preds, ref.model_version)
            for image_id, preds in predictions.items()
        }
        if predictions:
            session.execute(
                update(Image).where(Image.id.in_(list(predictions))).values(predicted_round=ref.number)
            )

    # per unlabeled box of the shard: id, image, probabilities, features
    box_ids: list[int] = []
    box_images: list[int] = []
    probs: list[np.ndarray] = []
    features: list[np.ndarray] = []
    centre_features: list[np.ndarray] = []
    image_features: dict[int, np.ndarray] = {}
    for w, d in zip(to_predict, detections, strict=True):
        box_ids += new_ids[w.image.id]
        box_images += [w.image.id] * len(kept[w.image.id])
        probs += [d.probs[i].numpy() for i in kept[w.image.id]]
        if d.features is not None:
            features += [d.features[i].numpy() for i in kept[w.image.id]]
        image_features[w.image.id] = d.image_feature.numpy()
    for w, r in zip(to_rescore, rescored, strict=True):
        n_unlabeled = 0 if w.predict else len(w.unlabeled)
        if not w.predict:
            box_ids += [b.id for b in w.unlabeled]
            box_images += [w.image.id] * n_unlabeled
            probs += list(r.probs[:n_unlabeled].numpy())
            if r.features is not None:
                features += list(r.features[:n_unlabeled].numpy())
        if r.features is not None and coreset and settings.unit == "box":
            centre_features += list(r.features[n_unlabeled:].numpy())
        image_features.setdefault(w.image.id, r.image_feature.numpy())

    box_scores: dict[int, float] = {}
    image_scores: dict[int, float] = {}
    ids_array = np.asarray(box_ids, dtype=np.int64)
    if settings.strategy != "coreset" and len(ids_array):
        values = strategies.score(
            settings.strategy,
            ids=ids_array,
            probs=np.stack(probs) if probs else np.zeros((0, len(ref.classes))),
            seed=settings.seed,
            salt=ref.number,
        )
        box_scores = dict(zip(box_ids, values.tolist(), strict=True))
    if settings.unit == "image" and settings.strategy != "coreset":
        pool_images = [w.image.id for w in work if not w.image.fully_labeled]
        if settings.strategy == "random":
            values = strategies.hashed_uniform(
                np.asarray(pool_images, dtype=np.int64), settings.seed, ref.number
            )
        else:
            position = {image_id: i for i, image_id in enumerate(pool_images)}
            mapped = np.asarray([position[i] for i in box_images], dtype=np.int64)
            values = strategies.reduce(
                np.asarray([box_scores[b] for b in box_ids]), mapped, len(pool_images), settings.reduction
            )
        image_scores = dict(zip(pool_images, np.asarray(values).tolist(), strict=True))
    if coreset:
        labeled_images = [w.image.id for w in work if w.image.fully_labeled or w.labeled]
        ordered = sorted(image_features)
        dim = next(iter(image_features.values())).shape[0] if image_features else 0
        box_dim = (
            features[0].shape[0] if features else (centre_features[0].shape[0] if centre_features else 0)
        )
        ctx.artifacts.save_features(
            ref.round_id,
            index,
            box_ids=ids_array,
            box_features=np.stack(features) if features else np.zeros((0, box_dim), np.float32),
            centre_features=np.stack(centre_features)
            if centre_features
            else np.zeros((0, box_dim), np.float32),
            image_ids=np.asarray(ordered, dtype=np.int64),
            image_features=np.stack([image_features[i] for i in ordered]) if ordered else np.zeros((0, dim)),
            image_labeled=np.asarray([i in set(labeled_images) for i in ordered], dtype=bool),
        )
    with ctx.db.transaction() as session:
        rounds.record_scores(session, ref.round_id, box_scores, image_scores)
        session.execute(
            update(Shard)
            .where(Shard.round_id == ref.round_id, Shard.stage == "score", Shard.index == index)
            .values(worker=ctx.token)
        )
        last = rounds.shard_finished(session, ref.round_id, "score", index)
        done = len(rounds.shards_done(session, ref.round_id, "score"))
        job = rounds.get_job(session, job_id, for_update=True)
        scored = int((job.progress or {}).get("images_scored", 0)) + len(images)
        rounds.job_progress(
            session,
            job_id,
            stage="scoring",
            shards_done=done,
            shards_total=total,
            images_scored=scored,
            fraction=round(0.7 + 0.2 * done / total, 4),
        )
    return last


# --- rank and evaluate ---------------------------------------------------------------------------------


def rank_round(ctx: WorkerContext, job_id: str) -> None:
    ref = load(ctx, job_id)
    if ref.state != "scoring":
        raise Skip(f"round {ref.number} is {ref.state}, not scoring")
    running(ctx, job_id, "ranking")
    if ref.settings.strategy == "coreset":
        shards = ctx.artifacts.load_features(ref.round_id)
        budget = ref.settings.round_size
        with ctx.db.transaction() as session:
            if ref.settings.unit == "box":
                ids = np.concatenate([s["box_ids"] for s in shards]) if shards else np.zeros(0, np.int64)
                pool = np.concatenate([s["box_features"] for s in shards]) if shards else np.zeros((0, 1))
                centres = (
                    np.concatenate([s["centre_features"] for s in shards]) if shards else np.zeros((0, 1))
                )
                scores = strategies.coreset_scores(pool, centres, budget) if len(ids) else np.zeros(0)
                rounds.record_scores(
                    session, ref.round_id, dict(zip(ids.tolist(), scores.tolist(), strict=True))
                )
            else:
                ids = np.concatenate([s["image_ids"] for s in shards])
                feats = np.concatenate([s["image_features"] for s in shards])
                labeled = np.concatenate([s["image_labeled"] for s in shards])
                scores = strategies.coreset_scores(feats[~labeled], feats[labeled], budget)
                rounds.record_scores(
                    session, ref.round_id, {}, dict(zip(ids[~labeled].tolist(), scores.tolist(), strict=True))
                )
    with ctx.db.transaction() as session:
        rounds.apply_ranking(session, ref.round_id)
        rounds.job_progress(session, job_id, stage="evaluating", fraction=0.92)


def evaluate_round(ctx: WorkerContext, job_id: str) -> dict[str, Any]:
    ref = load(ctx, job_id)
    if ref.model_version is None or ref.state not in ("open", "closed"):
        raise Skip(f"round {ref.number} is {ref.state}, not ready for evaluation")
    running(ctx, job_id, "evaluating")
    with ctx.db.transaction(write=False) as session:
        test = list(
            session.scalars(
                select(Image)
                .where(Image.project_id == ref.project_id, Image.split == "test")
                .order_by(Image.id)
            )
        )
        truth: dict[int, list[Box]] = {image.id: [] for image in test}
        for box in session.scalars(
            select(Box).where(
                Box.project_id == ref.project_id, Box.status == "labeled", Box.image_id.in_(list(truth))
            )
        ):
            truth[box.image_id].append(box)
    items = [
        Item(
            image.path,
            [b.bbox for b in truth[image.id]],
            [b.label for b in truth[image.id]],
            image_id=image.id,
            width=image.width,
            height=image.height,
        )
        for image in test
        if truth[image.id]
    ]
    if items:
        metrics: dict[str, Any] = evaluate(ctx.detector(ref.model_version), items)
    else:
        metrics = {"map": None, "map50": None, "note": "no test images with ground truth"}
    with ctx.db.transaction() as session:
        rounds.record_evaluation(session, ref.round_id, metrics)
        rounds.job_succeeded(session, job_id)
    return metrics


# --- recovery ------------------------------------------------------------------------------------------


def stale_jobs(ctx: WorkerContext) -> list[str]:
    """Jobs queued or running whose last sign of life is older than job_stale_s; their claim is released."""
    cutoff = utcnow() - timedelta(seconds=ctx.settings.job_stale_s)
    with ctx.db.transaction() as session:
        jobs = list(
            session.scalars(
                select(Job)
                .where(Job.state.in_(("queued", "running")))
                .with_for_update(skip_locked=True, key_share=True)
                if ctx.db.dialect != "sqlite"
                else select(Job).where(Job.state.in_(("queued", "running")))
            )
        )
        stale = [job for job in jobs if (job.heartbeat_at or job.created_at) < cutoff]
        for job in stale:
            job.worker = None
            job.heartbeat_at = utcnow()
            job.progress = {**(job.progress or {}), "recovered_at": utcnow().isoformat()}
        return [job.id for job in stale]
