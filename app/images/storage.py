"""Image files: URIs resolved under the allowed roots, sizes read safely, uploads stored in the data dir."""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from app.errors import Forbidden, Invalid, NotFound
from app.settings import Settings

UPLOAD_SUFFIXES = {
    "JPEG": ".jpg",
    "PNG": ".png",
    "BMP": ".bmp",
    "GIF": ".gif",
    "TIFF": ".tif",
    "WEBP": ".webp",
}


def resolve_under_roots(raw: str, settings: Settings, *, what: str = "uri") -> Path:
    """The absolute path a ``file://`` URI (or plain path) names, if it lies under an allowed root: 422 for
    a malformed one (a ``.`` or ``..`` segment included: refused as written, before anything is looked
    up), 403 for one outside the roots whether or not it exists (the answer must not tell), 404 for one
    under a root that is not there."""
    if raw.startswith("file://"):
        parsed = urlparse(raw)
        if parsed.netloc not in ("", "localhost"):
            raise Invalid(
                f"{what}: file URIs must name a local path (file:///...), got host {parsed.netloc!r}"
            )
        raw_path = unquote(parsed.path)
    elif "://" in raw:
        raise Invalid(f"{what}: only file:// URIs are supported, got {raw.split('://')[0]}://")
    else:
        raw_path = raw
    if "\x00" in raw_path:
        raise Invalid(f"{what}: the path contains a NUL byte")
    path = Path(raw_path)
    if not path.is_absolute():
        raise Invalid(f"{what}: the path must be absolute, got {raw_path!r}")
    if any(segment in (".", "..") for segment in raw_path.split("/")):
        raise Invalid(f"{what}: {raw_path} has a '.' or '..' segment; name the file directly")
    try:  # where it would lead: '..' and the links that exist followed, nothing required to exist
        _check_under_roots(path.resolve(strict=False), raw_path, settings, what)
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise NotFound(f"{what}: {raw_path} does not exist") from None
    _check_under_roots(resolved, raw_path, settings, what)  # a link inside a root may point out of it
    return resolved


def _check_under_roots(resolved: Path, raw_path: str, settings: Settings, what: str) -> None:
    if not any(resolved.is_relative_to(root) for root in settings.allowed_roots):
        roots = ", ".join(str(root) for root in settings.allowed_roots)
        raise Forbidden(
            f"{what}: {raw_path} is outside the allowed image roots ({roots}); set BOXAL_IMAGE_ROOTS"
        )


def read_image_size(path: Path, settings: Settings, *, what: str = "image") -> tuple[int, int, str]:
    """(width, height, format) from the file header; refuses decompression bombs and non-images."""
    PILImage.MAX_IMAGE_PIXELS = settings.max_image_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as img:
                width, height = img.size
                fmt = img.format or ""
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise Invalid(
            f"{what}: over {settings.max_image_pixels} pixels (decompression-bomb guard); "
            "raise BOXAL_MAX_IMAGE_PIXELS if it is genuine"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise Invalid(f"{what}: not a readable image file") from None
    if width * height > settings.max_image_pixels:
        raise Invalid(f"{what}: {width}x{height} is over {settings.max_image_pixels} pixels")
    return width, height, fmt


def upload_path(settings: Settings, project_id: int, fmt: str) -> Path:
    folder = settings.uploads_dir / str(project_id)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{uuid.uuid4().hex}{UPLOAD_SUFFIXES.get(fmt, '.img')}"
