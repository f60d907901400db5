"""Stage 2: score the pool, shard by shard (image id modulo the shard count), on any number of workers.

For each pool image of the shard the round's model either predicts new boxes (the first round, or every
round under pool policy ``refresh``) or re-scores the unlabeled boxes it already has (``fixed``). Every
unlabeled box then gets its informativeness from the project's strategy (the image unit reduces box
scores per image); whole-pool strategies (core-set) instead keep the shard's features for the ranking
stage. Scores are staged per round and only served once the ranking is applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from app.jobs import service as jobs
from app.metrics import SHARDS_SCORED
from app.models import Box
from app.rounds import results
from app.rounds.results import PoolImage
from formats.geometry import iou
from worker import acquisition
from worker.context import WorkerContext
from worker.engine.data import load_image
from worker.engine.detector import Detections
from worker.engine.inference import predict, rescore
from worker.engine.views import view_terms
from worker.stages.job import RoundRef, Skip, load, running

MATCH_IOU = 0.5  # pool policy refresh: a new prediction this close to an answered box is dropped


def plan_scoring(ctx: WorkerContext, ref: RoundRef) -> tuple[int, list[int]]:
    """Split the pool into shards once per round; the shard count and the shards not done yet."""
    with ctx.db.transaction() as session:
        total = jobs.planned_shards(session, ref.round_id, "score")
        if total is None:
            pool = results.pool_size(session, ref.project_id)
            total = max(1, -(-pool // ctx.settings.shard_images))
            jobs.plan_shards(session, ref.round_id, "score", total)
        done = jobs.shards_done(session, ref.round_id, "score")
    return total, [i for i in range(total) if i not in done]


@dataclass
class ShardOutputs:
    """What the round's model says about a shard: one row per unlabeled box (by database id), the
    features of labeled boxes (core-set centres), and a pooled feature per image."""

    box_ids: list[int] = field(default_factory=list)
    box_images: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # the model's confidence in the box, as labeled
    bboxes: list[list[float]] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    centre_features: list[np.ndarray] = field(default_factory=list)
    image_features: dict[int, np.ndarray] = field(default_factory=dict)

    def add_box(
        self,
        box_id: int,
        image_id: int,
        bbox: list[float],
        score: float,
        probs: torch.Tensor,
        feature: torch.Tensor | None,
    ) -> None:
        self.box_ids.append(box_id)
        self.box_images.append(image_id)
        self.bboxes.append(bbox)
        self.scores.append(score)
        self.probs.append(probs.numpy())
        if feature is not None:
            self.features.append(feature.numpy())

    def in_band(self, min_score: float) -> ShardOutputs:
        """Only the boxes the model scores at least ``min_score`` (a detection's score; a kept box's
        probability of its class): the box queries a query band lets through. Labeled boxes' and images'
        features stay."""
        if min_score <= 0 or not self.box_ids:
            return self
        keep = [i for i, score in enumerate(self.scores) if score >= min_score]
        return ShardOutputs(
            box_ids=[self.box_ids[i] for i in keep],
            box_images=[self.box_images[i] for i in keep],
            scores=[self.scores[i] for i in keep],
            bboxes=[self.bboxes[i] for i in keep],
            probs=[self.probs[i] for i in keep],
            features=[self.features[i] for i in keep] if self.features else [],
            centre_features=self.centre_features,
            image_features=self.image_features,
        )

    def batch(self, num_classes: int) -> acquisition.BoxBatch:
        return acquisition.BoxBatch(
            box_ids=np.asarray(self.box_ids, dtype=np.int64),
            image_ids=np.asarray(self.box_images, dtype=np.int64),
            probs=np.stack(self.probs) if self.probs else np.zeros((0, num_classes)),
            features=np.stack(self.features) if self.features else None,
        )


def score_shard(ctx: WorkerContext, job_id: str, index: int, total: int) -> bool:
    """Predict or re-score one shard of the pool and stage its scores; True if it was the last shard."""
    ref = load(ctx, job_id)
    if ref.state != "scoring" or ref.model_version is None:
        raise Skip(f"round {ref.number} is {ref.state}, not scoring")
    with ctx.db.transaction(write=False) as session:
        if index in jobs.shards_done(session, ref.round_id, "score"):
            raise Skip(f"shard {index} of round {ref.number} is done")
        shard = results.pool_shard(session, ref.project_id, index, total)
    running(ctx, job_id, "scoring")
    strategy = ref.strategy()
    # labeled boxes' features needed (core-set's centres)
    centres = strategy.whole_pool and not strategy.needs_views and ref.settings.unit == "box"
    work = [p for p in shard if _needs_model(ref, p, strategy)]
    outputs = ShardOutputs()
    _predict_new(ctx, ref, [p for p in work if _predicts(ref, p)], outputs)
    rescored = [p for p in work if not _predicts(ref, p) or (centres and p.labeled)]
    _rescore_fixed(ctx, ref, rescored, outputs, centres=centres)
    box_scores: dict[int, float] = {}
    image_scores: dict[int, float] = {}
    batch = outputs.batch(len(ref.classes))
    # box queries: only what the model believes (query_min_score); images are scored on all their boxes
    queries = outputs.in_band(ref.settings.query_min_score) if ref.settings.unit == "box" else outputs
    if strategy.whole_pool:
        if strategy.needs_views:  # its "features" are each candidate's disagreement across views
            queries = _view_terms(ctx, ref, work, queries)
        _save_features(ctx, ref, index, work, queries)
    else:
        candidates = queries.batch(len(ref.classes))
        box_scores = dict(zip(queries.box_ids, strategy.score_boxes(candidates).tolist(), strict=True))
        if ref.settings.whole_images:
            pool = np.asarray([p.image.id for p in work if not p.image.fully_labeled], dtype=np.int64)
            image_scores = dict(zip(pool.tolist(), strategy.score_images(pool, batch).tolist(), strict=True))
    if ref.settings.unit == "box":
        image_scores = _fallback_scores(ref, shard, batch)
    return _finish_shard(ctx, ref, index, total, len(shard), box_scores, image_scores)


def _view_terms(ctx: WorkerContext, ref: RoundRef, work: list[PoolImage], out: ShardOutputs) -> ShardOutputs:
    """``out`` with each candidate box's consistency terms (worker/engine/views.py) as its features."""
    assert ref.model_version is not None
    detector = ctx.detector(ref.model_version)
    paths = {p.image.id: p.image.path for p in work}
    rows = np.zeros((len(out.box_ids), 2), dtype=np.float32)
    by_image: dict[int, list[int]] = {}
    for i, owner in enumerate(out.box_images):
        by_image.setdefault(owner, []).append(i)
    for image_id, mine in sorted(by_image.items()):
        boxes = torch.tensor([out.bboxes[i] for i in mine], dtype=torch.float32).reshape(-1, 4)
        probs = torch.from_numpy(np.stack([out.probs[i] for i in mine]))
        rows[mine] = view_terms(detector, load_image(paths[image_id]), boxes, probs, ref.settings.t_d)
    return replace(out, features=list(rows), centre_features=[])


def _fallback_scores(ref: RoundRef, shard: list[PoolImage], batch: acquisition.BoxBatch) -> dict[int, float]:
    """The order in which a box round's image queries are served once its box queries run out."""
    settings = ref.settings
    pool = np.asarray([p.image.id for p in shard if not p.image.fully_labeled], dtype=np.int64)
    params = acquisition.Params(seed=settings.seed, salt=ref.number, reduction=settings.reduction)
    tie = acquisition.hashed_uniform(pool, settings.seed, ref.number)
    if settings.fallback == "random":
        return dict(zip(pool.tolist(), tie.tolist(), strict=True))
    on_pool = np.isin(batch.image_ids, pool)
    rows = acquisition.BoxBatch(
        batch.box_ids[on_pool],
        batch.image_ids[on_pool],
        None if batch.probs is None else batch.probs[on_pool],
    )
    uncertainty = acquisition.build("least_confidence", params).score_images(pool, rows)
    return dict(zip(pool.tolist(), (uncertainty + 1e-6 * tie).tolist(), strict=True))


def _predicts(ref: RoundRef, image: PoolImage) -> bool:
    """Whether the round's model predicts new boxes on this image (rather than re-scoring its old ones)."""
    if image.image.fully_labeled:
        return False
    return ref.settings.pool_policy == "refresh" or image.image.predicted_round is None


def _needs_model(ref: RoundRef, image: PoolImage, strategy: acquisition.Strategy) -> bool:
    if _predicts(ref, image) or image.unlabeled:
        return True
    return strategy.whole_pool and (bool(image.labeled) or ref.settings.whole_images)


def _predict_new(ctx: WorkerContext, ref: RoundRef, images: list[PoolImage], out: ShardOutputs) -> None:
    """New predictions (score >= t_d) on ``images``, recorded as unlabeled boxes of this round."""
    if not images:
        return
    assert ref.model_version is not None
    detector = ctx.detector(ref.model_version)
    detections = predict(detector, [p.image.path for p in images], ref.settings.t_d)
    with ctx.db.transaction() as session:
        for image, found in zip(images, detections, strict=True):
            kept = [i for i in range(len(found.scores)) if not _on_an_answer(found, i, image)]
            predictions = [_prediction(found, i) for i in kept]
            new_ids = results.record_predictions(
                session, ref.round_id, image.image.id, predictions, ref.model_version
            )
            for box_id, i in zip(new_ids, kept, strict=True):
                feature = None if found.features is None else found.features[i]
                box = found.boxes[i].tolist()
                out.add_box(box_id, image.image.id, box, float(found.scores[i]), found.probs[i], feature)
            out.image_features[image.image.id] = found.image_feature.numpy()


def _on_an_answer(found: Detections, i: int, image: PoolImage) -> bool:
    box = found.boxes[i].tolist()
    return any(iou(box, answered.bbox) >= MATCH_IOU for answered in image.answered)


def _prediction(found: Detections, i: int) -> dict[str, Any]:
    return {
        "bbox": found.boxes[i].tolist(),
        "label": int(found.labels[i]),
        "score": float(found.scores[i]),
        "probs": found.probs[i].tolist(),
    }


def _rescore_fixed(
    ctx: WorkerContext, ref: RoundRef, images: list[PoolImage], out: ShardOutputs, *, centres: bool
) -> None:
    """The current model's view of boxes already in the pool: each image's unlabeled boxes (unless it
    was just predicted) and, with ``centres``, its labeled boxes (core-set centres)."""
    if not images:
        return
    assert ref.model_version is not None
    boxes: list[list[Box]] = [
        ([] if _predicts(ref, p) else p.unlabeled) + (p.labeled if centres else []) for p in images
    ]
    tensors = [torch.tensor([b.bbox for b in bs], dtype=torch.float32).reshape(-1, 4) for bs in boxes]
    seen = rescore(ctx.detector(ref.model_version), [p.image.path for p in images], tensors)
    for image, own, view in zip(images, boxes, seen, strict=True):
        features = view.features if view.features is not None else [None] * len(own)
        for box, probs, feature in zip(own, view.probs, features, strict=True):
            if box.status == "unlabeled":
                out.add_box(box.id, image.image.id, box.bbox, float(probs[box.label]), probs, feature)
            elif feature is not None:
                out.centre_features.append(feature.numpy())
        out.image_features.setdefault(image.image.id, view.image_feature.numpy())


def _save_features(
    ctx: WorkerContext, ref: RoundRef, index: int, work: list[PoolImage], out: ShardOutputs
) -> None:
    """Keep the shard's features for a whole-pool strategy, which scores at the ranking stage."""
    labeled = {p.image.id for p in work if p.image.fully_labeled or p.labeled}
    ordered = sorted(out.image_features)
    image_dim = len(next(iter(out.image_features.values()))) if out.image_features else 0
    box_dim = (
        len(out.features[0]) if out.features else (len(out.centre_features[0]) if out.centre_features else 0)
    )
    ctx.artifacts.save_features(
        ref.round_id,
        index,
        box_ids=np.asarray(out.box_ids, dtype=np.int64),
        box_features=np.stack(out.features) if out.features else np.zeros((0, box_dim), np.float32),
        centre_features=(
            np.stack(out.centre_features) if out.centre_features else np.zeros((0, box_dim), np.float32)
        ),
        image_ids=np.asarray(ordered, dtype=np.int64),
        image_features=(
            np.stack([out.image_features[i] for i in ordered]) if ordered else np.zeros((0, image_dim))
        ),
        image_labeled=np.asarray([i in labeled for i in ordered], dtype=bool),
    )


def _finish_shard(
    ctx: WorkerContext,
    ref: RoundRef,
    index: int,
    total: int,
    images: int,
    box_scores: dict[int, float],
    image_scores: dict[int, float],
) -> bool:
    """Stage the shard's scores and mark it done, in one transaction; True if it was the last."""
    with ctx.db.transaction() as session:
        results.record_scores(session, ref.round_id, box_scores, image_scores)
        last = jobs.shard_finished(session, ref.round_id, "score", index, worker=ctx.token)
        done = len(jobs.shards_done(session, ref.round_id, "score"))
        job = jobs.get_job(session, ref.job_id, for_update=True)
        scored = int((job.progress or {}).get("images_scored", 0)) + images
        jobs.job_progress(
            session,
            ref.job_id,
            stage="scoring",
            shards_done=done,
            shards_total=total,
            images_scored=scored,
            fraction=round(0.7 + 0.2 * done / total, 4),
        )
    SHARDS_SCORED.inc()  # committed
    return last
