from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.auth.deps import Admin, InProject, current_principal
from app.db import Database
from app.deps import DatabaseDep, Paging, ReadSession, SettingsDep
from app.errors import Invalid, NotFound, TooLarge
from app.images import remote, service, storage
from app.images.schemas import ImageDetail, ImagePublic, ImagesIn, ImagesOut, SkippedImage
from app.projects.service import get_project
from app.schemas import ERRORS, ImageId, Page, ProjectId
from app.validation import describe_validation_error

router = APIRouter(
    prefix="/v1/projects/{project_id}/images",
    tags=["images"],
    responses=ERRORS,
    dependencies=[Depends(current_principal)],
)

MAX_FILES = 1000  # files in one multipart upload
_MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "minItems": 1,
            "maxItems": MAX_FILES,
        },
        "split": {"type": "string", "enum": ["pool", "test"], "default": "pool"},
        "external_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "description": "only with a single file; default: the file stem",
        },
    },
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ImagesOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/ImagesIn"}},
                "multipart/form-data": {"schema": _MULTIPART_SCHEMA},
            },
        }
    },
)
async def register_images(
    project_id: ProjectId, request: Request, db: DatabaseDep, settings: SettingsDep, _: Admin
) -> ImagesOut:
    """Register server-side files (JSON) or upload image files (multipart)."""
    # Async only to stream the body; every file and database step runs in a worker thread, so that no
    # transaction is ever open on the event loop, across an await for a client's body.
    await run_in_threadpool(_existing_project, db, project_id)  # 404 before reading a large body
    content_type = request.headers.get("content-type", "")
    skipped: list[tuple[str, str]] = []
    existing = "error"
    if content_type.startswith("multipart/form-data"):
        new_images = await _read_uploads(request, project_id, settings)
    else:
        try:
            body = ImagesIn.model_validate_json(await request.body())
        except ValidationError as exc:
            raise Invalid(describe_validation_error(exc, prefix="body")) from exc
        existing = body.existing
        if body.prefix is not None:
            new_images, skipped = await run_in_threadpool(
                service.prepare_prefix, body.prefix, body.split, settings
            )
        else:
            new_images = await run_in_threadpool(service.prepare, body.images or [], settings)
    committed = False

    def register() -> ImagesOut:
        nonlocal committed
        with db.transaction() as session:
            project = get_project(session, project_id)
            fresh = new_images
            if existing == "skip":
                fresh, already = service.split_registered(session, project, new_images)
                skipped.extend((image.external_id, "already registered: skipped") for image in already)
            rows = service.register(session, project, fresh) if fresh else []
            out = ImagesOut(
                images=[service.to_public(row) for row in rows],
                skipped=[SkippedImage(item=item, reason=reason) for item, reason in skipped],
            )
        committed = True
        return out

    try:
        return await run_in_threadpool(register)
    except BaseException:
        if not committed:  # a cancel after the commit must not delete the files of registered images
            _remove_uploads(new_images, settings)
        raise


def _existing_project(db: Database, project_id: int) -> None:
    with db.transaction(write=False) as session:
        get_project(session, project_id)


async def _read_uploads(request: Request, project_id: ProjectId, settings: Any) -> list[service.NewImage]:
    form = await request.form(max_files=MAX_FILES, max_fields=100)
    files = [value for key, value in form.multi_items() if key == "files" and isinstance(value, UploadFile)]
    if not files:
        raise Invalid("files: a multipart upload needs at least one part named 'files'")
    split = str(form.get("split") or "pool")
    if split not in ("pool", "test"):
        raise Invalid(f"split: must be 'pool' or 'test', got {split!r}")
    external_id = form.get("external_id")
    if external_id is not None and not isinstance(external_id, str):
        raise Invalid("external_id: must be a text field, not a file")
    if external_id is not None and not 1 <= len(external_id) <= 255:
        raise Invalid("external_id: must be 1 to 255 characters")
    if external_id is not None and len(files) != 1:
        raise Invalid("external_id: only allowed when uploading a single file")
    prepared: list[service.NewImage] = []
    try:
        for i, upload in enumerate(files):
            size = upload.size or 0
            if size > settings.max_upload_bytes:
                raise TooLarge(
                    f"files[{i}] ({upload.filename}): {size} bytes is over the upload limit of "
                    f"{settings.max_upload_bytes} bytes"
                )
            data = await upload.read()
            final, width, height = await run_in_threadpool(
                _store_upload, data, settings, project_id, f"files[{i}]"
            )
            stem = Path(upload.filename or final.name).stem or final.stem
            prepared.append(
                service.NewImage(
                    final,
                    split,
                    (external_id or stem)[:255],
                    width,
                    height,
                )
            )
    except BaseException:
        _remove_uploads(prepared, settings)
        raise
    finally:
        await form.close()
    return prepared


def _store_upload(data: bytes, settings: Any, project_id: int, what: str) -> tuple[Path, int, int]:
    """Write an upload into the data dir under its format's suffix, if it is an image: path and size."""
    tmp = storage.upload_path(settings, project_id, "")
    tmp.write_bytes(data)
    try:
        width, height, fmt = storage.read_image_size(tmp, settings, what=what)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    final = tmp.with_suffix(storage.UPLOAD_SUFFIXES.get(fmt, ".img"))
    tmp.rename(final)
    return final, width, height


def _remove_uploads(images: list[service.NewImage], settings: Any) -> None:
    for image in images:
        if isinstance(image.path, Path) and image.path.is_relative_to(settings.uploads_dir.resolve()):
            image.path.unlink(missing_ok=True)


@router.get("", response_model=Page[ImagePublic])
def list_images(
    project_id: ProjectId,
    session: ReadSession,
    page: Paging,
    _: InProject,
    split: Annotated[str | None, Query(pattern="^(pool|test)$")] = None,
) -> Page[ImagePublic]:
    get_project(session, project_id)
    rows = service.list_images(session, project_id, split=split, limit=page.limit, cursor=page.cursor)
    next_cursor = rows[-1].id if len(rows) == page.limit else None
    return Page[ImagePublic](items=[service.to_public(row) for row in rows], next_cursor=next_cursor)


@router.get("/{image_id}", response_model=ImageDetail)
def get_image(project_id: ProjectId, image_id: ImageId, session: ReadSession, _: InProject) -> ImageDetail:
    project = get_project(session, project_id)
    return service.detail(session, project, service.get_image(session, project_id, image_id))


@router.get(
    "/{image_id}/content",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}, "description": "the image file's bytes"}},
)
def image_content(
    project_id: ProjectId, image_id: ImageId, db: DatabaseDep, settings: SettingsDep, _: InProject
) -> FileResponse:
    with db.transaction(write=False) as session:  # closed before any remote read: no transaction waits on it
        image = service.get_image(session, project_id, image_id)
        where, file_name = image.path, image.file_name
    if remote.is_remote(where):  # read through the cache; this handler runs in a worker thread
        try:
            return FileResponse(remote.fetch(where, settings), filename=file_name)
        except remote.RemoteError as exc:
            raise exc.http() from exc
    path = Path(where)
    if not path.is_file():
        raise NotFound(f"image {image_id}'s file is no longer on disk ({file_name})")
    return FileResponse(path, filename=file_name)
