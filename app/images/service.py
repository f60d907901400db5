"""Registering pool and test images (server-side files or uploads) and reading them back."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.images import remote, storage
from app.images.schemas import BoxPublic, ImageDetail, ImageIn, ImagePublic
from app.models import Box, Image, Project
from app.rounds import ranking
from app.settings import Settings


@dataclass(frozen=True)
class NewImage:
    path: Path | str  # a local file, or a remote URI (app/images/remote.py)
    split: str
    external_id: str
    width: int
    height: int

    @property
    def file_name(self) -> str:
        return (
            PurePosixPath(str(self.path).split("?", 1)[0]).name
            if remote.is_remote(str(self.path))
            else Path(self.path).name
        )


def seed_informativeness(project: Project, external_id: str) -> float:
    """Round 0 has no model: image queries are served in a seeded random order (the random strategy)."""
    return random.Random(f"{project.settings.get('seed', 0)}:{external_id}").random()


def prepare(items: list[ImageIn], settings: Settings) -> list[NewImage]:
    """Check every item before anything is written, so one bad item rejects the whole request."""
    prepared = []
    for i, item in enumerate(items):
        where = f"images[{i}].uri"
        if remote.is_remote(item.uri):
            prepared.append(_prepare_remote(item, settings, where))
            continue
        path = storage.resolve_under_roots(item.uri, settings, what=where)
        if not path.is_file():
            raise Invalid(f"{where}: {path} is not a file")
        if item.width is None or item.height is None:
            width, height, _ = storage.read_image_size(path, settings, what=where)
        else:
            width, height = item.width, item.height
        prepared.append(NewImage(path, item.split, item.external_id or path.stem, width, height))
    return prepared


def _prepare_remote(item: ImageIn, settings: Settings, where: str) -> NewImage:
    remote.check_allowed(item.uri, settings, what=where)
    stem = PurePosixPath(item.uri.split("?", 1)[0]).stem
    if item.width is not None and item.height is not None:
        width, height = item.width, item.height
    else:
        try:
            local = remote.fetch(item.uri, settings)
        except remote.RemoteError as exc:
            raise exc.http() from exc
        width, height, _ = storage.read_image_size(local, settings, what=where)
    return NewImage(item.uri, item.split, item.external_id or stem, width, height)


def prepare_prefix(
    prefix: str, split: str, settings: Settings
) -> tuple[list[NewImage], list[tuple[str, str]]]:
    """Every image file under a local directory or a remote prefix, with its size read (remote files
    through the cache, eight at a time); files that cannot be read are skipped, each with why."""
    skipped: list[tuple[str, str]] = []
    if remote.is_remote(prefix):
        prefix = remote.as_folder(prefix)  # a prefix is a folder
        remote.check_allowed(prefix, settings, what="prefix")
        outside: list[str] = []
        try:
            uris = remote.listing(prefix, settings, outside=outside)
        except remote.RemoteError as exc:
            raise exc.http() from exc
        skipped += [(link, f"a link outside {prefix}: not read") for link in outside]
    else:
        root = storage.resolve_under_roots(prefix, settings, what="prefix")
        if not root.is_dir():
            raise Invalid(f"prefix: {root} is not a directory")
        uris = sorted(
            str(p) for p in root.rglob("*") if p.suffix.lower() in remote.IMAGE_SUFFIXES and p.is_file()
        )

    def one(uri: str) -> NewImage | None:
        try:  # a local file is resolved again: a link inside the folder may lead out of the roots
            if remote.is_remote(uri):
                local = remote.fetch(uri, settings)
            else:
                local = storage.resolve_under_roots(uri, settings, what=uri)
            width, height, _ = storage.read_image_size(local, settings, what=uri)
        except remote.RemoteError as exc:
            skipped.append((uri, exc.why))
            return None
        except (Invalid, Forbidden, NotFound) as exc:
            skipped.append((uri, exc.detail))
            return None
        return NewImage(uri, split, PurePosixPath(uri.split("?", 1)[0]).stem, width, height)

    with ThreadPoolExecutor(max_workers=8) as pool:
        found = [image for image in pool.map(one, uris) if image is not None]
    return found, sorted(skipped)


def registered_ids(session: Session, project: Project, ids: list[str]) -> set[str]:
    taken: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        stmt = select(Image.external_id).where(Image.project_id == project.id, Image.external_id.in_(chunk))
        taken.update(session.scalars(stmt))
    return taken


def split_registered(
    session: Session, project: Project, images: list[NewImage]
) -> tuple[list[NewImage], list[NewImage]]:
    """(not registered yet, already registered), by external id."""
    taken = registered_ids(session, project, [image.external_id for image in images])
    return [i for i in images if i.external_id not in taken], [i for i in images if i.external_id in taken]


def register(session: Session, project: Project, images: list[NewImage]) -> list[Image]:
    ids = [image.external_id for image in images]
    repeated = sorted({x for x in ids if ids.count(x) > 1})
    if repeated:
        raise Invalid(f"external_id repeated in the request: {repeated[:10]}")
    taken = registered_ids(session, project, ids)
    if taken:
        raise Conflict(
            f"images already registered with external_id {sorted(taken)[:10]}; send "
            '"existing": "skip" to register only the others'
        )
    rows = [
        Image(
            project_id=project.id,
            split=image.split,
            external_id=image.external_id,
            file_name=image.file_name,
            path=str(image.path),
            width=image.width,
            height=image.height,
            informativeness=seed_informativeness(project, image.external_id)
            if image.split == "pool"
            else None,
        )
        for image in images
    ]
    session.add_all(rows)
    session.flush()
    return rows


def get_image(session: Session, project_id: int, image_id: int) -> Image:
    image = session.get(Image, image_id)
    if image is None or image.project_id != project_id:
        raise NotFound(f"image {image_id} does not exist in project {project_id}")
    return image


def content_url(project_id: int, image_id: int) -> str:
    return f"/v1/projects/{project_id}/images/{image_id}/content"


def to_public(image: Image) -> ImagePublic:
    return ImagePublic(
        id=image.id,
        external_id=image.external_id,
        file_name=image.file_name,
        split=image.split,
        width=image.width,
        height=image.height,
        url=content_url(image.project_id, image.id),
        fully_labeled=image.fully_labeled,
        informativeness=image.informativeness,
        created_at=image.created_at,
    )


def box_public(box: Box, classes: list[str], informativeness: float | None = None) -> BoxPublic:
    """A box as the API shows it; ``informativeness`` is its value in the served ranking, where the
    caller looked it up (``ranking.served_informativeness``), else the box's own."""
    return BoxPublic(
        id=box.id,
        bbox=box.bbox,
        label=classes[box.label],
        source=box.source,
        status=box.status,
        score=box.score,
        probs=box.probs,
        informativeness=box.informativeness if informativeness is None else informativeness,
        model_version=box.model_version,
        predicted=box.predicted,
        round_queried=box.round_queried,
        round_answered=box.round_answered,
    )


def detail(session: Session, project: Project, image: Image) -> ImageDetail:
    boxes = list(session.scalars(select(Box).where(Box.image_id == image.id).order_by(Box.id)))
    served = ranking.served_informativeness(session, project, boxes)
    return ImageDetail(
        **to_public(image).model_dump(),
        boxes=[box_public(box, project.classes, served[box.id]) for box in boxes],
    )


def list_images(
    session: Session, project_id: int, *, split: str | None, limit: int, cursor: int | None
) -> list[Image]:
    stmt = select(Image).where(Image.project_id == project_id).order_by(Image.id).limit(limit)
    if split:
        stmt = stmt.where(Image.split == split)
    if cursor is not None:
        stmt = stmt.where(Image.id > cursor)
    return list(session.scalars(stmt))
