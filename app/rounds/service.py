"""Rounds as a state machine in the database, and the reports a worker makes while running one.

    open --(POST /rounds, or round_size answers)--> closed, and round N+1: training
    training --(training_finished)--> scoring --(apply_ranking)--> open
    any running state --(job_failed)--> failed --(POST /rounds)--> training again

While round N+1 trains and scores, the pool keeps being served from round N's ranking.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from app.db import load
from app.errors import Conflict, NotFound
from app.models import Box, BoxScore, Image, ImageScore, Job, Project, Round, Shard, utcnow
from app.projects.service import latest_round, project_settings
from app.rounds import snapshot
from app.rounds.schemas import CurvePoint, RoundPublic

RUN_ROUND = "round"


def get_round(session: Session, round_id: int, *, for_update: bool = False) -> Round:
    found = load(session, Round, round_id, for_update=for_update)
    if found is None:
        raise NotFound(f"round id {round_id} does not exist")
    return found


def get_job(session: Session, job_id: str, *, for_update: bool = False) -> Job:
    job = load(session, Job, job_id, for_update=for_update)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def _new_job(session: Session, project: Project, round_: Round) -> Job:
    job = Job(
        id=str(uuid.uuid4()),
        project_id=project.id,
        round_id=round_.id,
        kind=RUN_ROUND,
        state="queued",
        progress={"stage": "queued"},
    )
    session.add(job)
    session.flush()
    round_.job_id = job.id
    return job


def start_next_round(session: Session, project: Project, now: datetime | None = None) -> tuple[Round, Job]:
    """Close the open round (taking the label snapshot) and create the next one, training.

    A failed round is started again instead. The caller commits, then enqueues the job.
    """
    now = now or utcnow()
    current = latest_round(session, project.id, for_update=True)
    if current.state in ("training", "scoring"):
        raise Conflict(f"round {current.number} is still {current.state}; start the next one when it is open")
    if current.state == "failed":
        current.state = "training"
        current.error = None
        job = _new_job(session, project, current)
        return current, job
    cut = snapshot.last_event_id(session, project.id)
    counts = snapshot.counts(session, project.id, cut)
    if counts.images_labeled == 0:
        raise Conflict(
            "nothing to train on yet: import ground truth for some pool images (POST .../imports) "
            "or answer the seed image queries first"
        )
    current.state = "closed"
    current.closed_at = now
    upcoming = Round(
        project_id=project.id,
        number=current.number + 1,
        state="training",
        snapshot_event_id=cut,
        boxes_obtained=counts.boxes_obtained,
        images_labeled=counts.images_labeled,
        queries_answered=counts.queries_answered,
        seconds=counts.seconds,
        created_at=now,
    )
    session.add(upcoming)
    session.flush()
    job = _new_job(session, project, upcoming)
    return upcoming, job


def maybe_close_round(session: Session, project: Project) -> tuple[Round, Job] | None:
    """After answers arrive: start the next round if the open one has what it asked for.

    Checked first without a lock (the common case is "not yet"), then again under the round's row lock
    so that two concurrent batches cannot both close it.
    """
    if not _round_is_due(session, project, latest_round(session, project.id)):
        return None
    current = latest_round(session, project.id, for_update=True)
    if not _round_is_due(session, project, current):
        return None
    return start_next_round(session, project)


def _round_is_due(session: Session, project: Project, current: Round) -> bool:
    if current.state != "open":
        return False
    config = project_settings(project)
    if current.number == 0 and config.seed_images > 0:
        labeled = session.scalar(
            select(func.count()).where(
                Image.project_id == project.id, Image.split == "pool", Image.fully_labeled
            )
        )
        return (labeled or 0) >= config.seed_images
    return snapshot.answers_since(session, project.id, current.snapshot_event_id or 0) >= config.round_size


# --- what a worker reports -------------------------------------------------------------------------


def job_started(session: Session, job_id: str, worker: str) -> Job:
    job = get_job(session, job_id, for_update=True)
    now = utcnow()
    job.state = "running"
    job.attempts += 1
    job.worker = worker
    job.started_at = job.started_at or now
    job.heartbeat_at = now
    job.error = None
    session.flush()
    return job


def job_progress(session: Session, job_id: str, **progress: Any) -> None:
    job = get_job(session, job_id, for_update=True)
    job.progress = {**(job.progress or {}), **progress}
    job.heartbeat_at = utcnow()
    session.flush()


def job_succeeded(session: Session, job_id: str) -> None:
    job = get_job(session, job_id, for_update=True)
    job.state = "succeeded"
    job.finished_at = utcnow()
    job.progress = {**(job.progress or {}), "stage": "done", "fraction": 1.0}
    session.flush()


def job_failed(session: Session, job_id: str, error: str) -> None:
    """The job stops with a readable error; its round becomes retryable; the old ranking keeps serving."""
    job = get_job(session, job_id, for_update=True)
    job.state = "failed"
    job.error = error[:4000]
    job.finished_at = utcnow()
    if job.round_id is not None:
        round_ = get_round(session, job.round_id, for_update=True)
        if round_.state in ("training", "scoring"):
            round_.state = "failed"
            round_.error = job.error
    session.flush()


def training_finished(session: Session, round_id: int, model_version: str) -> Round:
    round_ = get_round(session, round_id, for_update=True)
    if round_.state == "training":
        round_.state = "scoring"
        round_.model_version = model_version
    elif round_.model_version != model_version:
        raise Conflict(f"round {round_.number} is {round_.state} with model {round_.model_version}")
    session.flush()
    return round_


def record_predictions(
    session: Session, round_id: int, image_id: int, predictions: list[dict[str, Any]], model_version: str
) -> list[int]:
    """New unlabeled boxes from this round's model on one pool image; running it twice replaces, not adds.

    Each prediction: ``bbox`` (xyxy pixels), ``label`` (class index), ``score``, ``probs`` (class vector).
    They stay hidden from leasing until the round's ranking is applied.
    """
    round_ = get_round(session, round_id)
    session.execute(
        delete(Box).where(
            Box.image_id == image_id,
            Box.source == "predicted",
            Box.status == "unlabeled",
            Box.round_predicted == round_.number,
        )
    )
    rows = [
        Box(
            project_id=round_.project_id,
            image_id=image_id,
            source="predicted",
            status="unlabeled",
            x1=float(p["bbox"][0]),
            y1=float(p["bbox"][1]),
            x2=float(p["bbox"][2]),
            y2=float(p["bbox"][3]),
            label=int(p["label"]),
            score=float(p["score"]),
            probs=[float(v) for v in p["probs"]] if p.get("probs") is not None else None,
            model_version=model_version,
            round_predicted=round_.number,
        )
        for p in predictions
    ]
    session.add_all(rows)
    session.flush()
    return [row.id for row in rows]


def record_scores(
    session: Session,
    round_id: int,
    box_scores: dict[int, float],
    image_scores: dict[int, float] | None = None,
) -> None:
    """Stage informativeness under this round's model (upsert: a shard that runs twice writes once)."""
    if box_scores:
        ids = list(box_scores)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            session.execute(delete(BoxScore).where(BoxScore.round_id == round_id, BoxScore.box_id.in_(chunk)))
        session.execute(
            BoxScore.__table__.insert(),
            [{"round_id": round_id, "box_id": b, "informativeness": float(v)} for b, v in box_scores.items()],
        )
    if image_scores:
        ids = list(image_scores)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            session.execute(
                delete(ImageScore).where(ImageScore.round_id == round_id, ImageScore.image_id.in_(chunk))
            )
        session.execute(
            ImageScore.__table__.insert(),
            [
                {"round_id": round_id, "image_id": i, "informativeness": float(v)}
                for i, v in image_scores.items()
            ],
        )
    session.flush()


def plan_shards(session: Session, round_id: int, stage: str, total: int) -> None:
    existing = session.scalar(select(func.count()).where(Shard.round_id == round_id, Shard.stage == stage))
    if existing:
        return
    session.add_all(Shard(round_id=round_id, stage=stage, index=i, total=total) for i in range(total))
    session.flush()


def shard_finished(session: Session, round_id: int, stage: str, index: int) -> bool:
    """Mark one shard done; True when every shard of the stage is done (the caller hands on)."""
    session.execute(
        update(Shard)
        .where(Shard.round_id == round_id, Shard.stage == stage, Shard.index == index)
        .values(done=True)
    )
    session.flush()
    left = session.scalar(
        select(func.count()).where(Shard.round_id == round_id, Shard.stage == stage, Shard.done.is_(False))
    )
    return left == 0


def shards_done(session: Session, round_id: int, stage: str) -> set[int]:
    stmt = select(Shard.index).where(Shard.round_id == round_id, Shard.stage == stage, Shard.done)
    return set(session.scalars(stmt))


def apply_ranking(session: Session, round_id: int) -> Round:
    """Make this round's scores the served ranking, in one transaction, and open the round."""
    round_ = get_round(session, round_id, for_update=True)
    if round_.state in ("open", "closed"):
        return round_
    if round_.state != "scoring":
        raise Conflict(f"round {round_.number} is {round_.state}, not scoring")
    project = session.get(Project, round_.project_id)
    assert project is not None
    session.execute(
        update(Box)
        .where(Box.id == BoxScore.box_id, BoxScore.round_id == round_id, Box.status == "unlabeled")
        .values(informativeness=BoxScore.informativeness, model_version=round_.model_version)
    )
    session.execute(
        update(Image)
        .where(Image.id == ImageScore.image_id, ImageScore.round_id == round_id)
        .values(informativeness=ImageScore.informativeness, model_version=round_.model_version)
    )
    if project_settings(project).pool_policy == "refresh":
        repredicted = select(Image.id).where(
            Image.project_id == project.id, Image.predicted_round == round_.number
        )
        session.execute(
            delete(Box).where(
                Box.project_id == project.id,
                Box.source == "predicted",
                Box.status == "unlabeled",
                Box.round_predicted < round_.number,
                Box.lease_query_id.is_(None),
                Box.image_id.in_(repredicted),
            )
        )
    session.execute(delete(BoxScore).where(BoxScore.round_id == round_id))
    session.execute(delete(ImageScore).where(ImageScore.round_id == round_id))
    unlabeled = session.scalar(
        select(func.count()).where(Box.project_id == project.id, Box.status == "unlabeled")
    )
    round_.pool_stats = {"unlabeled_boxes": int(unlabeled or 0)}
    round_.state = "open"
    round_.opened_at = utcnow()
    project.serving_round = round_.number
    session.flush()
    return round_


def record_evaluation(session: Session, round_id: int, metrics: dict[str, Any]) -> None:
    round_ = get_round(session, round_id, for_update=True)
    round_.metrics = {**(round_.metrics or {}), **metrics}
    session.flush()


# --- reading ---------------------------------------------------------------------------------------


def to_public(round_: Round) -> RoundPublic:
    return RoundPublic(
        round=round_.number,
        state=round_.state,  # type: ignore[arg-type]
        job_id=round_.job_id,
        model_version=round_.model_version,
        boxes_obtained=round_.boxes_obtained,
        images_labeled=round_.images_labeled,
        queries_answered=round_.queries_answered,
        seconds=round_.seconds,
        metrics=round_.metrics,
        pool=round_.pool_stats,
        error=round_.error,
        created_at=round_.created_at,
        opened_at=round_.opened_at,
        closed_at=round_.closed_at,
    )


def list_rounds(session: Session, project_id: int, *, limit: int, cursor: int | None) -> list[Round]:
    stmt = select(Round).where(Round.project_id == project_id).order_by(Round.number).limit(limit)
    if cursor is not None:
        stmt = stmt.where(Round.number > cursor)
    return list(session.scalars(stmt))


def curve(session: Session, project_id: int, *, limit: int, cursor: int | None) -> list[CurvePoint]:
    stmt = (
        select(Round)
        .where(Round.project_id == project_id, Round.number >= 1, Round.metrics.is_not(None))
        .order_by(Round.number)
        .limit(limit)
    )
    if cursor is not None:
        stmt = stmt.where(Round.number > cursor)
    return [
        CurvePoint(
            round=r.number,
            boxes_obtained=r.boxes_obtained,
            queries_answered=r.queries_answered,
            seconds=r.seconds,
            map=(r.metrics or {}).get("map"),
            map50=(r.metrics or {}).get("map50"),
            model_version=r.model_version,
        )
        for r in session.scalars(stmt)
    ]
