"""The ``boxal`` commands that work on a server or its database from outside it: ``wait`` (follow a job
over HTTP) and ``token`` (create, list, revoke). Each finds what `boxal serve` uses as serve does:
BOXAL_HOST and BOXAL_PORT, BOXAL_DATA_DIR (or --data-dir) and the admin token kept there, and says in one
line what it could not reach."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.orm import Session

from app.settings import Settings, get_settings
from boxal.watchdog import STALL_S

token_cli = typer.Typer(help="bearer tokens: admin, or annotator scoped to projects", no_args_is_help=True)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="the server's data dir (default BOXAL_DATA_DIR, ./boxal-data): its database and admin token",
    ),
]


def _settings(data_dir: Path | None = None) -> Settings:
    settings = get_settings()
    return settings.model_copy(update={"data_dir": data_dir}) if data_dir is not None else settings


def server_url(settings: Settings) -> str:
    """Where `boxal serve` with these settings listens, as a client reaches it."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def admin_token(settings: Settings) -> str | None:
    """BOXAL_ADMIN_TOKEN, else the token `boxal serve` keeps in the data dir, else None."""
    from app.auth.service import ADMIN_TOKEN_FILE

    if settings.admin_token:
        return settings.admin_token
    path = settings.resolved_data_dir / ADMIN_TOKEN_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def wait(
    job_id: Annotated[str, typer.Argument(help="the job to follow")],
    url: Annotated[
        str | None, typer.Option(help="the boxal server (default: BOXAL_HOST and BOXAL_PORT, as serve binds)")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="BOXAL_TOKEN", help="bearer token (default: the data dir's admin token)"),
    ] = None,
    data_dir: DataDir = None,
    timeout: Annotated[float, typer.Option(help="give up after this many seconds")] = 24 * 3600,
    stall_timeout: Annotated[
        float,
        typer.Option(
            help="give up when the job shows no progress for this many seconds, or at once when the "
            "server's worker exited for good (or has not consumed for 120 s)"
        ),
    ] = STALL_S,
) -> None:
    """Follow a job with a progress bar until it succeeds (exit 0) or fails, or gives up (exit 1)."""
    import httpx

    from app.progress import follow_job
    from boxal.watchdog import ServerStuck

    settings = _settings(data_dir)
    url = url or server_url(settings)
    token = token or admin_token(settings)
    try:
        state = follow_job(url, job_id, token=token, timeout=timeout, stall_s=stall_timeout)
    except (ServerStuck, TimeoutError) as exc:
        typer.echo(f"boxal wait stopped: {exc}", err=True)
        raise typer.Exit(1) from exc
    except httpx.TransportError as exc:
        typer.echo(
            f"boxal wait: no boxal server answers at {url} ({type(exc).__name__}); is `boxal serve` running? "
            "Name it with --url or BOXAL_HOST and BOXAL_PORT",
            err=True,
        )
        raise typer.Exit(1) from exc
    except httpx.HTTPStatusError as exc:
        typer.echo(f"boxal wait: {_refused(exc.response, job_id)}", err=True)
        raise typer.Exit(1) from exc
    raise typer.Exit(0 if state == "succeeded" else 1)


def _refused(response: object, job_id: str) -> str:
    status = getattr(response, "status_code", 0)
    try:
        detail = response.json().get("detail", "")  # type: ignore[attr-defined]
    except ValueError:
        detail = ""
    if status == 401:
        return (
            f"the server refused the token ({detail or 'unauthorized'}); give one with --token or "
            "BOXAL_TOKEN, or --data-dir for the server's admin token"
        )
    if status == 404:
        return f"job {job_id} does not exist on this server (or the token may not see it)"
    return f"the server answered {status}: {detail}"


@contextmanager
def _database(settings: Settings, *, write: bool = True) -> Iterator[Session]:
    """A transaction on the server's database; what goes wrong is one line naming that database."""
    from sqlalchemy.exc import DBAPIError

    from app.db import Database
    from app.errors import DomainError

    db = Database.for_settings(settings)
    try:
        with db.transaction(write=write) as session:
            yield session
    except DomainError as exc:
        typer.echo(f"{exc.detail} (in the database {_where(settings)})", err=True)
        raise typer.Exit(2) from exc
    except DBAPIError as exc:
        typer.echo(
            f"cannot use the database {_where(settings)}: {str(exc.orig).splitlines()[0]}. Is it the one "
            "`boxal serve` made (it creates and migrates it on first start)?",
            err=True,
        )
        raise typer.Exit(2) from exc
    finally:
        db.dispose()


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="who holds it (annotator tokens record answers under it)")],
    role: Annotated[str, typer.Option(help="admin or annotator")] = "annotator",
    project: Annotated[
        list[int] | None, typer.Option(help="a project an annotator token may work in")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from app.auth.service import create_token

    with _database(_settings(data_dir)) as session:
        row, plain = create_token(session, name, role, project or [])
    typer.echo(f"token {row.id} ({role}, {name}): {plain}")
    typer.echo("store it now: it cannot be shown again", err=True)


@token_cli.command("list")
def token_list(data_dir: DataDir = None) -> None:
    """List tokens (id, prefix, role, projects, state); never the tokens themselves."""
    from app.auth.service import list_tokens

    with _database(_settings(data_dir), write=False) as session:
        for row in list_tokens(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
            scope = ",".join(str(p) for p in row.projects) or "all"
            typer.echo(f"{row.id}\t{row.prefix}...\t{row.role}\t{row.name}\tprojects:{scope}\t{state}")


@token_cli.command("revoke")
def token_revoke(
    key: Annotated[str, typer.Argument(help="token id, or the prefix shown by list")],
    data_dir: DataDir = None,
) -> None:
    """Revoke a token: it is refused from the next request on."""
    from app.auth.service import revoke_token

    with _database(_settings(data_dir)) as session:
        row = revoke_token(session, key)
        typer.echo(f"revoked token {row.id} ({row.name})")


def _where(settings: Settings) -> str:
    """The database a command read, in words a user can check (--data-dir, BOXAL_DATABASE_URL)."""
    source = "BOXAL_DATABASE_URL" if settings.database_url else f"the data dir {settings.resolved_data_dir}"
    return f"{_redact(settings.sqlalchemy_url)}, from {source}; --data-dir or BOXAL_DATABASE_URL name another"


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
