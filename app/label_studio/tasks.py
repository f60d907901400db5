"""Label Studio tasks as boxal pool images: the task's image URL read where Label Studio keeps it, and the
image registered once, under the external id ``ls-task-<task id>``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError, Invalid
from app.images import remote
from app.images import service as images
from app.images.schemas import ImageIn
from app.label_studio.schemas import TaskIn
from app.models import Image, LabelStudioLink, Project
from app.settings import Settings

LOCAL_FILES = "/data/local-files/"
UPLOAD = "/data/upload/"


def external_id(task_id: int) -> str:
    return f"ls-task-{task_id}"


def image_uri(url: str, settings: Settings, *, what: str) -> str:
    """Where boxal reads a task's image: remote URLs as they are (under BOXAL_IMAGE_ROOTS), Label Studio's
    local files under its document root, its uploads under its media folder."""
    if remote.is_remote(url):
        return url
    parts = urlsplit(url)
    if parts.path == LOCAL_FILES or parts.path == LOCAL_FILES.rstrip("/"):
        relative = parse_qs(parts.query).get("d", [""])[0]
        if not relative:
            raise Invalid(f"{what}: {url} names no file (?d=<path under the document root>)")
        return str(_root(settings.label_studio_document_root, "BOXAL_LABEL_STUDIO_DOCUMENT_ROOT", url, what)
                   / unquote(relative).lstrip("/"))  # fmt: skip
    if parts.path.startswith(UPLOAD):
        media = _root(settings.label_studio_media_root, "BOXAL_LABEL_STUDIO_MEDIA_ROOT", url, what)
        return str(media / "upload" / unquote(parts.path.removeprefix(UPLOAD)))
    raise Invalid(
        f"{what}: {url} is not an image boxal can read: give tasks http(s)://, s3://, gs:// or az:// URLs, "
        "Label Studio local files (/data/local-files/?d=...) or uploads (/data/upload/...)"
    )


def _root(root: Path | None, variable: str, url: str, what: str) -> Path:
    if root is None:
        raise Invalid(f"{what}: {url} is a Label Studio file; set {variable} to where boxal can read it")
    return root.expanduser().resolve()


def task_images(
    session: Session, project: Project, link: LabelStudioLink, tasks: list[TaskIn], settings: Settings
) -> dict[int, Image]:
    """Each task's pool image, registering the tasks boxal has not seen; every new task's image is read
    first, so one that cannot be read rejects the call (a 4xx naming the task) and registers nothing."""
    ids = {task.id: external_id(task.id) for task in tasks}
    known = {
        image.external_id: image
        for image in session.scalars(
            select(Image).where(Image.project_id == project.id, Image.external_id.in_(list(ids.values())))
        )
    }
    prepared: list[images.NewImage] = []
    seen = set(known)
    for i, task in enumerate(tasks):
        if ids[task.id] in seen:
            continue
        seen.add(ids[task.id])
        what = f"tasks[{i}] (task {task.id}).data.{link.value}"
        url = task.data.get(link.value)
        if not isinstance(url, str) or not url:
            raise Invalid(f"{what}: the task has no image URL in data.{link.value}")
        item = ImageIn(uri=image_uri(url, settings, what=what), external_id=ids[task.id])
        try:
            prepared += images.prepare([item], settings)
        except DomainError as exc:  # the task named, not a position in a list the caller never sent
            raise type(exc)(f"{what}: {exc.detail.removeprefix('images[0].uri: ')}") from exc
    for image in images.register(session, project, prepared) if prepared else []:
        known[image.external_id] = image
    return {task.id: known[ids[task.id]] for task in tasks}
