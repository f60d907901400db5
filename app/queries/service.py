"""Leasing queries: an index walk down the queue, highest informativeness first, never one box to two people.

Boxes follow the serving round's ranking, walked down its staged scores (app/rounds/ranking.py), then
boxes no round has scored; images walk their own queue index.

PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets concurrent leases pass each other without waiting.
SQLite: every write transaction starts with ``BEGIN IMMEDIATE`` (app/db.py), so leases are serialised.
A lease expires after the project's ``lease_ttl_s``; the box then returns to the queue by itself.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from app.db import load
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.images.service import content_url
from app.models import Box, BoxScore, Image, Project, Query
from app.models.queue import BOX_QUEUE_WHERE, IMAGE_QUEUE_WHERE, informativeness_order
from app.projects.service import project_settings
from app.queries.schemas import Hint, QueryImage, QueryOut
from app.queries.seeding import seed_images_left, seeding
from app.rounds import ranking
from app.rounds.service import serving_unit
from app.settings import Settings


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def lease(
    session: Session,
    project: Project,
    *,
    k: int | None,
    annotator: str,
    unit: str | None,
    now: datetime,
    settings: Settings,
) -> list[QueryOut]:
    config = project_settings(project)
    if k is not None and k > settings.max_k:
        raise Invalid(f"k: at most {settings.max_k} queries per lease call (BOXAL_MAX_K)")
    # the project's k is bounded when written; one written before the server's limit was lowered is capped
    k = k or min(config.k, settings.max_k)
    expires_at = now + timedelta(seconds=config.lease_ttl_s)
    fallback = False
    seeding_now = seeding(project)
    if unit is None:  # the project decides: its unit (auto: the round's), image queries while seeding or
        # once boxes run out (before any model too, unless boxes were imported: annotators never wait)
        unit = "image" if seeding_now else serving_unit(session, project)
        fallback = unit == "box"
    if unit in ("image", "review"):
        if seeding_now:
            k = min(k, seed_images_left(session, project, now))
        if k <= 0:
            return []
        review = unit == "review" and not seeding_now  # the seed set is drawn from scratch
        return _lease_images(
            session, project, k, annotator, now, expires_at, unit="review" if review else "image"
        )
    queries = _lease_boxes(session, project, k, annotator, now, expires_at)
    if fallback and len(queries) < k:  # no dead end: the round goes on with whole images
        queries += _lease_images(session, project, k - len(queries), annotator, now, expires_at)
    return queries


def _free(model: type[Box] | type[Image], now: datetime) -> Any:
    return or_(model.lease_expires_at.is_(None), model.lease_expires_at <= now)


def _queue_walk(
    session: Session,
    project: Project,
    model: type[Box] | type[Image],
    queue_where: str,
    k: int,
    now: datetime,
) -> Any:
    """Up to k free rows down the table's own queue index, highest informativeness first."""
    stmt = (
        select(model)
        .where(model.project_id == project.id, text(queue_where), _free(model, now))
        .order_by(informativeness_order(model.informativeness, _dialect(session)), model.id)
        .limit(k)
    )
    if model is Box:
        # predictions of a round still being scored stay hidden until its ranking is served
        stmt = stmt.where(or_(Box.round_predicted.is_(None), Box.round_predicted <= project.serving_round))
    return _locking(session, stmt)


def _locking(session: Session, stmt: Any, of: Any = None) -> Any:
    if _dialect(session) == "postgresql":
        return stmt.with_for_update(skip_locked=True, key_share=True, of=of)
    return stmt


def _free_boxes(session: Session, project: Project, k: int, now: datetime) -> list[tuple[Box, float | None]]:
    """The serving round's ranking walked down its scores (app/rounds/ranking.py), then, if that runs
    out, boxes no round has scored (imported since, or before any round) by their own informativeness.
    Under a query band (query_min_score) a ranked round's predictions outside its ranking were left out
    on purpose: only boxes no round predicted are walked then (before any ranking, every box is)."""
    found: list[tuple[Box, float | None]] = []
    round_id = ranking.serving_round_id(session, project)
    if round_id is not None:
        ranked = (
            select(Box, BoxScore.informativeness)
            .join(BoxScore, BoxScore.box_id == Box.id)
            .where(BoxScore.round_id == round_id, Box.status == "unlabeled", _free(Box, now))
            .order_by(BoxScore.informativeness.desc(), BoxScore.box_id)
            .limit(k)
        )
        found = [(box, score) for box, score in session.execute(_locking(session, ranked, of=Box))]
    if len(found) < k:
        rest = _queue_walk(session, project, Box, BOX_QUEUE_WHERE, k - len(found), now)
        if project_settings(project).query_min_score > 0 and round_id is not None:
            rest = rest.where(Box.round_predicted.is_(None))  # left out of the served ranking on purpose
        if found:
            rest = rest.where(Box.id.not_in([box.id for box, _ in found]))
        found += [(box, box.informativeness) for box in session.scalars(rest)]
    return found


def _claim(
    session: Session,
    project: Project,
    model: type[Box] | type[Image],
    rows: list[Any],
    annotator: str,
    now: datetime,
    expires_at: datetime,
    unit: str | None = None,
) -> list[Query]:
    """Lease each of the locked, free ``rows`` (of ``model``) to a new query (of ``unit``: image rows are
    image or review queries)."""
    boxes = model is Box
    queries = [
        Query(
            project_id=project.id,
            unit=unit or ("box" if boxes else "image"),
            box_id=row.id if boxes else None,
            image_id=row.image_id if boxes else row.id,
            annotator=annotator,
            round=project.serving_round,
            created_at=now,
            expires_at=expires_at,
        )
        for row in rows
    ]
    session.add_all(queries)
    session.flush()
    extra = {"round_queried": project.serving_round} if boxes else {}
    if rows:
        session.execute(
            update(model),
            [
                {"id": row.id, "lease_query_id": query.id, "lease_expires_at": expires_at, **extra}
                for row, query in zip(rows, queries, strict=True)
            ],
        )
    return queries


def _lease_boxes(
    session: Session, project: Project, k: int, annotator: str, now: datetime, expires_at: datetime
) -> list[QueryOut]:
    found = _free_boxes(session, project, k, now)
    if not found:
        return []
    queries = _claim(session, project, Box, [box for box, _ in found], annotator, now, expires_at)
    image_ids = {box.image_id for box, _ in found}
    images = {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(image_ids)))}
    return [
        QueryOut(
            query_id=query.id,
            unit="box",
            box_id=box.id,
            image_id=box.image_id,
            image=_query_image(images[box.image_id]),
            bbox=box.bbox,
            label=project.classes[box.label],
            score=box.score,
            informativeness=informativeness,
            round=query.round,
            expires_at=expires_at,
        )
        for (box, informativeness), query in zip(found, queries, strict=True)
    ]


def _lease_images(
    session: Session,
    project: Project,
    k: int,
    annotator: str,
    now: datetime,
    expires_at: datetime,
    unit: Literal["image", "review"] = "image",
) -> list[QueryOut]:
    images = list(session.scalars(_queue_walk(session, project, Image, IMAGE_QUEUE_WHERE, k, now)))
    queries = _claim(session, project, Image, images, annotator, now, expires_at, unit=unit)
    claimed = list(zip(images, queries, strict=True))
    hints: dict[int, list[Hint]] = {image.id: [] for image, _ in claimed}
    if not hints:
        return []
    predicted = (
        select(Box)
        .where(Box.image_id.in_(list(hints)), Box.status == "unlabeled", Box.source == "predicted")
        .order_by(Box.score.desc())
    )
    if unit == "review":  # what the annotator reviews: the model's confident boxes
        predicted = predicted.where(Box.score >= project_settings(project).review_min_score)
    for box in session.scalars(predicted):
        hints[box.image_id].append(
            Hint(box_id=box.id, bbox=box.bbox, label=project.classes[box.label], score=box.score)
        )
    return [
        QueryOut(
            query_id=query.id,
            unit=unit,
            image_id=image.id,
            image=_query_image(image),
            informativeness=image.informativeness,
            round=query.round,
            expires_at=expires_at,
            predictions=hints[image.id],
        )
        for image, query in claimed
    ]


def claim_image(
    session: Session, project: Project, image: Image, annotator: str, unit: str, now: datetime
) -> Query:
    """A query of ``unit`` (image or review) on one given image, for an answer that arrives with it (a
    Label Studio annotation): the answer then checks the lease as any other (409 if someone else holds it)."""
    expires_at = now + timedelta(seconds=project_settings(project).lease_ttl_s)
    if image.lease_expires_at is not None and image.lease_expires_at > now:
        raise Conflict(f"image {image.id} is leased to another annotator until {image.lease_expires_at}")
    return _claim(session, project, Image, [image], annotator, now, expires_at, unit=unit)[0]


def _query_image(image: Image) -> QueryImage:
    return QueryImage(
        id=image.id,
        external_id=image.external_id,
        url=content_url(image.project_id, image.id),
        width=image.width,
        height=image.height,
    )


def get_query(session: Session, project_id: int, query_id: int, *, for_update: bool = False) -> Query:
    query = load(session, Query, query_id, for_update=for_update)
    if query is None or query.project_id != project_id:
        raise NotFound(f"query {query_id} does not exist in project {project_id}")
    return query


def release(session: Session, project_id: int, query_id: int, *, only_annotator: str | None = None) -> None:
    """Give a lease back unanswered: its box or image returns to the queue at once."""
    query = get_query(session, project_id, query_id, for_update=True)
    if only_annotator is not None and query.annotator != only_annotator:
        raise Forbidden(f"query {query_id} was leased to another annotator")
    if query.state == "answered":
        raise Conflict(f"query {query_id} was already answered; an answer cannot be given back")
    if query.state == "released":
        return
    query.state = "released"
    target = session.get(Box, query.box_id) if query.unit == "box" else session.get(Image, query.image_id)
    if target is not None and target.lease_query_id == query.id:
        target.lease_query_id = None
        target.lease_expires_at = None
    session.flush()
