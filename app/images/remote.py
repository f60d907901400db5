"""Images kept elsewhere: ``http(s)://``, ``s3://``, ``gs://`` and ``az://`` URIs read through fsspec, with a
read-through cache of bounded size in the data dir.

A URI must start with one of the URL prefixes of ``BOXAL_IMAGE_ROOTS`` (403 otherwise), and so must every
address an HTTP read reaches: each request and each redirect hop is checked before it is made, so a
server under an allowed prefix cannot send boxal elsewhere; a web server's listing keeps only the links
under the prefix it lists (the others are skipped and reported). Credentials come
from the usual environment variables of each store (``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``) and ``BOXAL_S3_ENDPOINT_URL``; nothing of them is stored. A read that fails says where
and why: ``RemoteError`` carries whether the object is missing, the store unreachable or too slow, which
callers turn into a per-image line of an import report, or 502/504 for ``/content``.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

from app.errors import BadGateway, DomainError, Forbidden, GatewayTimeout, Invalid, NotFound
from app.images import cache
from app.settings import Settings

REMOTE = re.compile(r"^(https?|s3|gs|gcs|az|abfs|abfss)://", re.IGNORECASE)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
MAX_FOLDERS = 10_000  # a web server's listing: at most this many folders are walked
_lock = threading.Lock()


class RemoteError(Exception):
    """A remote read failed: ``missing`` (no such object), ``forbidden`` (it would have reached an address
    outside the allowed prefixes), ``timeout`` or ``unreachable``."""

    def __init__(self, uri: str, kind: str, why: str) -> None:
        super().__init__(f"{uri}: {why}")
        self.uri, self.kind, self.why = uri, kind, why

    def http(self) -> DomainError:
        """As the API answers it: 404 for no such object and 403 for a read that would leave the allowed
        prefixes, as for a local file; the store is upstream, so 504 for a timeout, 502 for anything else."""
        kinds: dict[str, type[DomainError]] = {
            "missing": NotFound,
            "forbidden": Forbidden,
            "timeout": GatewayTimeout,
        }
        return kinds.get(self.kind, BadGateway)(str(self))


class OutsideRoots(Exception):
    """An HTTP request or a redirect hop that would leave the allowed URL prefixes (raised before it goes)."""

    def __init__(self, url: str, redirected_from: str | None = None) -> None:
        how = f"a redirect from {redirected_from} to {url}" if redirected_from else url
        super().__init__(f"{how} is outside the allowed URL prefixes; not followed")


def is_remote(uri: str) -> bool:
    return bool(REMOTE.match(uri))


def as_folder(prefix: str) -> str:
    """A prefix as the folder it names: with one trailing slash (``s3://`` stays whole)."""
    return prefix if prefix.endswith("/") else prefix + "/"


def _dotted(uri: str) -> bool:
    segments = unquote(uri.partition("://")[2].split("?", 1)[0]).split("/")
    return any(segment in (".", "..") for segment in segments)


def allowed(uri: str, settings: Settings) -> bool:
    """Whether ``uri`` lies under an allowed URL prefix, with no dot segment."""
    return not _dotted(uri) and any(uri.startswith(root) for root in settings.remote_roots)


def check_allowed(uri: str, settings: Settings, *, what: str = "uri") -> None:
    """403 unless ``uri`` lies under an allowed URL prefix; 422 for a dot segment, which a web client would
    resolve to a path outside the prefix it names."""
    if _dotted(uri):
        raise Invalid(f"{what}: {uri} has a '.' or '..' segment; name the object directly")
    roots = settings.remote_roots
    if not any(uri.startswith(root) for root in roots):
        allowed = ", ".join(roots) or "none"
        raise Forbidden(
            f"{what}: {uri} is outside the allowed URL prefixes ({allowed}); add its prefix to "
            "BOXAL_IMAGE_ROOTS"
        )


def filesystem(uri: str, settings: Settings) -> Any:
    """The fsspec filesystem for ``uri``'s scheme, with this server's endpoint and timeouts."""
    import fsspec

    protocol = uri.split("://", 1)[0].lower()
    options: dict[str, Any] = {}
    timeout = settings.remote_timeout_s
    if protocol == "s3":
        options["config_kwargs"] = {
            "connect_timeout": timeout,
            "read_timeout": timeout,
            "retries": {"max_attempts": 2},
        }
        if settings.s3_endpoint_url:
            options["client_kwargs"] = {"endpoint_url": settings.s3_endpoint_url}
    elif protocol in ("http", "https"):
        import aiohttp

        options["client_kwargs"] = {
            "timeout": aiohttp.ClientTimeout(total=timeout),
            "trace_configs": [_guard(settings)],
        }
    try:
        return fsspec.filesystem(protocol, **options)
    except ImportError as exc:  # gcsfs, adlfs: the store's own fsspec package
        raise RemoteError(
            uri, "unreachable", f"no fsspec support installed for {protocol}:// ({exc})"
        ) from exc


_guards: dict[int, tuple[Settings, Any]] = {}


def _guard(settings: Settings) -> Any:
    """An aiohttp trace that checks every request's URL (normalised: no dot segment is left) and every
    redirect's target against the allowed prefixes before the request is made; one per settings object,
    so that fsspec's cached filesystem (and its connections) is reused."""
    with _lock:
        if id(settings) not in _guards:
            _guards[id(settings)] = (settings, _new_guard(settings))
        return _guards[id(settings)][1]


def _new_guard(settings: Settings) -> Any:
    import aiohttp

    async def on_start(_: Any, __: Any, params: aiohttp.TraceRequestStartParams) -> None:
        if not allowed(str(params.url), settings):
            raise OutsideRoots(str(params.url))

    async def on_redirect(_: Any, __: Any, params: aiohttp.TraceRequestRedirectParams) -> None:
        location = params.response.headers.get("Location") or params.response.headers.get("URI")
        if location is None:
            return
        target = str(params.url.join(type(params.url)(location)))
        if not allowed(target, settings):
            raise OutsideRoots(target, redirected_from=str(params.url))

    config = aiohttp.TraceConfig()
    config.on_request_start.append(on_start)
    config.on_request_redirect.append(on_redirect)
    return config


def _failure(uri: str, exc: BaseException) -> RemoteError:
    """What went wrong, from the exception and its causes (fsspec's HTTP store turns a refused connection
    into FileNotFoundError, with the real error as its cause)."""
    chain: list[BaseException] = []
    at: BaseException | None = exc
    while at is not None and len(chain) < 8:
        chain.append(at)
        at = at.__cause__ or at.__context__
    for err in chain:
        if isinstance(err, OutsideRoots):
            return RemoteError(uri, "forbidden", str(err))
    for err in chain:
        name = type(err).__name__
        if isinstance(err, TimeoutError) or "Timeout" in name:
            return RemoteError(uri, "timeout", f"no answer within the timeout ({name})")
    for err in chain:
        if (isinstance(err, OSError) and not isinstance(err, FileNotFoundError)) or "Connect" in type(
            err
        ).__name__:
            return RemoteError(
                uri, "unreachable", f"could not be read ({type(err).__name__}: {str(err)[:200]})"
            )
    if isinstance(exc, FileNotFoundError):
        return RemoteError(uri, "missing", "no such object")
    return RemoteError(uri, "unreachable", f"could not be read ({type(exc).__name__}: {str(exc)[:200]})")


def fetch(uri: str, settings: Settings, *, max_bytes: int | None = None) -> Path:
    """A local copy of ``uri`` in the cache (read through on a miss); RemoteError when it cannot be read."""
    folder = settings.image_cache_dir
    suffix = PurePosixPath(uri.split("?", 1)[0]).suffix.lower()[:8]
    path = folder / (hashlib.sha256(uri.encode()).hexdigest()[:40] + suffix)
    if path.is_file():
        os.utime(path)  # recently used: evicted last
        return path
    limit = max_bytes or settings.max_upload_bytes
    try:
        with filesystem(uri, settings).open(uri, "rb") as handle:
            data = handle.read(limit + 1)
    except RemoteError:
        raise
    except Exception as exc:  # fsspec stores raise their own kinds; each is named
        raise _failure(uri, exc) from exc
    if len(data) > limit:
        raise RemoteError(uri, "unreachable", f"over {limit} bytes, the image size limit")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    cache.account(folder, len(data), settings.image_cache_bytes)
    return path


_configured: list[Settings] = []


def configure(settings: Settings) -> None:
    """The settings ``local`` reads through (a worker's, set when its context is made)."""
    _configured[:] = [settings]


def local(path: str | Path) -> Path:
    """A local file for an image path: the path itself, or a remote URI's cached copy. For readers that are
    given only a path (the engine's image loader); RemoteError when it cannot be read."""
    if not is_remote(str(path)):
        return Path(path)
    if not _configured:
        from app.settings import get_settings

        configure(get_settings())
    return fetch(str(path), _configured[0])


def listing(
    prefix: str,
    settings: Settings,
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES,
    outside: list[str] | None = None,
) -> list[str]:
    """Every object under ``prefix`` whose name ends in one of ``suffixes``, as full URIs, sorted. A web
    server's listing is walked page by page, and a link that leads out of the prefix (``../x.png``, a
    folder elsewhere) is neither read nor followed: it goes into ``outside`` when given."""
    fs = filesystem(prefix, settings)
    protocol = prefix.split("://", 1)[0]
    try:
        found = (
            _walk_web(fs, prefix, settings, outside)
            if protocol.lower() in ("http", "https")
            else fs.find(prefix)
        )
    except Exception as exc:
        raise _failure(prefix, exc) from exc
    uris = [f if "://" in f else f"{protocol}://{f}" for f in found]
    return sorted(u for u in uris if u.split("?", 1)[0].lower().endswith(suffixes))


def _walk_web(fs: Any, prefix: str, settings: Settings, outside: list[str] | None) -> list[str]:
    """The files a web server lists under ``prefix``, its folders followed (each once), links that lead
    out of it set aside."""
    from yarl import URL

    base = as_folder(prefix)
    files: list[str] = []
    seen, todo = {base}, [base]
    while todo:
        folder = todo.pop()
        for entry in fs.ls(folder, detail=True):
            link = str(URL(entry["name"]))  # normalised: a '..' segment is resolved, as a client would
            if not link.startswith(base) or not allowed(link, settings):
                if outside is not None and entry["name"] not in outside:
                    outside.append(entry["name"])
                continue
            if entry["type"] == "directory" or link.endswith("/"):
                if link not in seen and len(seen) < MAX_FOLDERS:
                    seen.add(link)
                    todo.append(as_folder(link))
            else:
                files.append(link)
    return files


def mirror(prefix: str, settings: Settings, suffixes: tuple[str, ...], dest: Path) -> Path:
    """Copy the small files (annotations, lists, data.yaml) under a remote prefix into ``dest``, keeping
    their layout, so that the format readers can read them; images stay where they are."""
    uris = listing(prefix, settings, suffixes)
    base = prefix.rstrip("/") + "/"
    fs = filesystem(prefix, settings)
    try:
        contents = fs.cat(uris) if uris else {}
    except Exception as exc:  # fsspec stores raise their own kinds; each is named
        raise _failure(prefix, exc) from exc
    protocol = prefix.split("://", 1)[0]
    for key, data in contents.items():
        uri = key if "://" in key else f"{protocol}://{key}"
        if isinstance(data, BaseException):
            raise _failure(uri, data)
        target = dest / uri.removeprefix(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest
