"""Label Studio tasks as boxal pool images: the task's image URL read where Label Studio keeps it, and the
image registered once, under the external id ``ls-task-<task id>``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import DomainError, Forbidden, Invalid
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


MAX_URL = 4096  # as long as an image URI may be (app/images/schemas.py)


def image_uri(url: str, settings: Settings, *, what: str) -> str:
    """Where boxal reads a task's image: remote URLs as they are (under BOXAL_IMAGE_ROOTS), Label Studio's
    local files strictly below its document root, its uploads strictly below its media folder."""
    if len(url) > MAX_URL:
        raise Invalid(f"{what}: the image URL is {len(url)} characters long; at most {MAX_URL} are read")
    if remote.is_remote(url):
        return url
    parts = urlsplit(url)
    if parts.path == LOCAL_FILES or parts.path == LOCAL_FILES.rstrip("/"):
        relative = parse_qs(parts.query).get("d", [""])[0]  # decoded once, as Label Studio decodes it
        if not relative:
            raise Invalid(f"{what}: {url} names no file (?d=<path under the document root>)")
        root = _root(settings.label_studio_document_root, "BOXAL_LABEL_STUDIO_DOCUMENT_ROOT", url, what)
        return str(below(root, relative, what=what, root_name="Label Studio's document root"))
    if parts.path.startswith(UPLOAD):
        media = _root(settings.label_studio_media_root, "BOXAL_LABEL_STUDIO_MEDIA_ROOT", url, what)
        relative = unquote(parts.path.removeprefix(UPLOAD))
        uploads = (media / "upload").resolve()
        return str(below(uploads, relative, what=what, root_name="Label Studio's upload folder"))
    raise Invalid(
        f"{what}: {url} is not an image boxal can read: give tasks http(s)://, s3://, gs:// or az:// URLs, "
        "Label Studio local files (/data/local-files/?d=...) or uploads (/data/upload/...)"
    )


def below(root: Path, relative: str, *, what: str, root_name: str) -> Path:
    """``root / relative`` if it lies strictly below ``root``; 403 otherwise, worded the same whether or
    not the file exists, and decided before anything is opened: a ``.`` or ``..`` segment, an absolute
    path, a backslash or a NUL byte are refused as written, and a link that leads out of the root (links
    followed where they exist) as resolved."""
    segments = relative.split("/")
    lexical = (
        relative.startswith("/")
        or "\\" in relative
        or "\x00" in relative
        or any(segment in (".", "..") for segment in segments)
    )
    resolved = None if lexical else (root / relative).resolve(strict=False)
    if resolved is None or resolved == root or not resolved.is_relative_to(root):
        raise Forbidden(
            f"{what}: {relative!r} is not a path below {root_name}; name a file under it, without '..', "
            "a leading '/' or links that lead out of it"
        )
    return resolved


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
