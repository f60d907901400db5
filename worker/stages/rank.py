"""Stage 3: make the round's staged scores the served ranking (whole-pool strategies score here)."""

from __future__ import annotations

import time

import numpy as np

from app.jobs import service as jobs
from app.rounds import ranking, results
from worker import acquisition
from worker.context import WorkerContext
from worker.stages.job import RoundRef, Skip, load, running


def rank_round(ctx: WorkerContext, job_id: str) -> None:
    ref = load(ctx, job_id)
    if ref.state != "scoring":
        raise Skip(f"round {ref.number} is {ref.state}, not scoring")
    running(ctx, job_id, "ranking")
    strategy = ref.strategy()
    if strategy.whole_pool:
        box_scores, image_scores = _whole_pool_scores(ctx, ref, strategy)
        with ctx.db.transaction() as session:
            results.record_scores(session, ref.round_id, box_scores, image_scores)
    with ctx.db.transaction() as session:
        results.apply_ranking(session, ref.round_id)
        jobs.job_progress(session, job_id, stage="evaluating", fraction=0.92)
    drop_superseded_scores(ctx, ref.project_id, ref.number)


DROP_PAUSE_S = 0.02


def drop_superseded_scores(ctx: WorkerContext, project_id: int, serving_number: int) -> None:
    """The previous rankings' staged scores, in short transactions of their own: leases go on between
    them (on SQLite each holds the write lock for a moment only). A run cut short leaves rows that the
    next round's call drops; they are never read, since leases walk the serving round's scores only."""
    while True:
        with ctx.db.transaction() as session:
            if not ranking.drop_superseded(session, project_id, serving_number):
                return
        time.sleep(DROP_PAUSE_S)  # a waiting lease gets the write lock before the next batch does


def _whole_pool_scores(
    ctx: WorkerContext, ref: RoundRef, strategy: acquisition.Strategy
) -> tuple[dict[int, float], dict[int, float]]:
    """Scores from every shard's features at once: unlabeled boxes against labeled ones (box unit),
    or unlabeled images against labeled ones (image unit)."""
    shards = ctx.artifacts.load_features(ref.round_id)
    if not shards:
        return {}, {}

    def joined(key: str) -> np.ndarray:
        return np.concatenate([s[key] for s in shards])

    if ref.settings.unit == "box":
        ids = joined("box_ids")
        scores = strategy.score_pool(joined("box_features"), joined("centre_features"))
        return dict(zip(ids.tolist(), scores.tolist(), strict=True)), {}
    ids, features, labeled = joined("image_ids"), joined("image_features"), joined("image_labeled")
    scores = strategy.score_pool(features[~labeled], features[labeled])
    return {}, dict(zip(ids[~labeled].tolist(), scores.tolist(), strict=True))
