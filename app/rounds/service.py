"""Rounds as a state machine in the database: closing one, starting the next, reading them back.

    open --(POST /rounds, or round_size answers)--> closed, and round N+1: training
    training --(training_finished)--> scoring --(apply_ranking)--> open
    any running state --(job_failed)--> failed --(POST /rounds)--> training again

While round N+1 trains and scores, the pool keeps being served from round N's ranking. What the
worker's stages write into a round (model, predictions, scores, ranking, metrics) is in results.py.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db import load
from app.errors import Conflict, NotFound
from app.jobs import service as jobs
from app.models import Image, Job, Project, Round, utcnow
from app.projects.service import latest_round, project_settings
from app.rounds import snapshot, unit
from app.rounds.schemas import CurvePoint, RoundPublic


def get_round(session: Session, round_id: int, *, for_update: bool = False) -> Round:
    found = load(session, Round, round_id, for_update=for_update)
    if found is None:
        raise NotFound(f"round id {round_id} does not exist")
    return found


def start_next_round(
    session: Session, project: Project, now: datetime | None = None, *, force: bool = True
) -> tuple[Round, Job]:
    """Close the open round (taking the label snapshot) and create the next one, training.

    A failed round is started again instead. Without ``force``, an open round of a model that still has
    queries to serve and has not received what it asked for is not closed (409, saying how far it is): a
    retrain nobody meant. The caller commits, then enqueues the job.
    """
    now = now or utcnow()
    current = latest_round(session, project.id, for_update=True)
    if current.state in ("training", "scoring"):
        raise Conflict(f"round {current.number} is still {current.state}; start the next one when it is open")
    if not force and current.state == "open" and current.number >= 1:
        _check_due(session, project, current)
    if current.state == "failed":
        current.state = "training"
        current.error = None
        job = jobs.new_round_job(session, current)
        return current, job
    cut = snapshot.last_event_id(session, project.id)
    answered = project_settings(project).training_images == "answered"
    counts = snapshot.counts(session, project.id, cut, answered_images=answered)
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
        classes=list(project.classes),  # a class added while it trains joins the next round
        boxes_obtained=counts.boxes_obtained,
        images_labeled=counts.images_labeled,
        queries_answered=counts.queries_answered,
        seconds=counts.seconds,
        created_at=now,
    )
    config = project_settings(project)
    if config.unit == "auto":  # chosen now, on the answers of the round just closed (app/rounds/unit.py)
        choice = unit.choose(session, project, config)
        upcoming.unit, upcoming.unit_choice = choice["unit"], choice
    session.add(upcoming)
    session.flush()
    job = jobs.new_round_job(session, upcoming)
    return upcoming, job


def round_unit(project: Project, round_: Round | None) -> str:
    """The unit ``round_`` serves: the project's, or under unit auto the round's choice (review before
    any: a review completes an image and measures the model; round 0 has no model to draw, so its
    reviews are image queries)."""
    config = project_settings(project)
    if config.unit != "auto":
        return config.unit
    return (round_.unit if round_ is not None else None) or "review"


def serving_unit(session: Session, project: Project) -> str:
    """The unit the serving round serves."""
    if project_settings(project).unit != "auto":
        return project_settings(project).unit
    serving = session.scalar(
        select(Round).where(Round.project_id == project.id, Round.number == project.serving_round)
    )
    return round_unit(project, serving)


def _check_due(session: Session, project: Project, current: Round) -> None:
    config = project_settings(project)
    used = spent(session, project, current)
    if used >= config.round_size:
        return
    open_images = session.scalar(
        select(func.count()).where(
            Image.project_id == project.id, Image.split == "pool", ~Image.fully_labeled
        )
    )
    if not open_images:
        return  # nothing left to ask: closing it early is the only way on
    what = "boxes obtained" if config.round_budget == "boxes" else "answers"
    raise Conflict(
        f"round {current.number} has {used} of the {config.round_size} {what} it asks for "
        f'({config.round_size - used} to go); send {{"force": true}} to close it and retrain now'
    )


def open_pool_images(session: Session, project: Project) -> int:
    """Pool images not fully labeled: what queries can still ask about."""
    stmt = select(func.count()).where(
        Image.project_id == project.id, Image.split == "pool", ~Image.fully_labeled
    )
    return int(session.scalar(stmt) or 0)


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
    return spent(session, project, current) >= config.round_size


def spent(session: Session, project: Project, current: Round) -> int:
    """What the open round has used of its budget: boxes obtained or answers, as round_budget says."""
    since = current.snapshot_event_id or 0
    if project_settings(project).round_budget == "boxes":
        return snapshot.boxes_since(session, project.id, since)
    return snapshot.answers_since(session, project.id, since)


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
        notice=(round_.pool_stats or {}).get("notice"),
        warning=(round_.metrics or {}).get("warning"),
        unit=round_.unit,
        unit_choice=round_.unit_choice,
        error=round_.error,
        classes=round_.classes,
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
            notice=(r.pool_stats or {}).get("notice"),
            warning=(r.metrics or {}).get("warning"),
            note=(r.metrics or {}).get("note"),
            unit=r.unit,
            unit_reason=(r.unit_choice or {}).get("reason"),
            per_class=(r.metrics or {}).get("per_class"),
        )
        for r in session.scalars(stmt)
    ]
