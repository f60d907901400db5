"""The ``boxal`` command: serve, worker, wait, db, token; and the commands other packages register under
the ``boxal.commands`` entry point (oracle/ adds simulate and report)."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from importlib.metadata import entry_points
from typing import Annotated

import typer

from app.cli_client import _redact, _settings, token_cli, wait
from app.settings import Settings

cli = typer.Typer(help="boxal: box-level active learning for object detection", no_args_is_help=True)
db_cli = typer.Typer(help="database schema (Alembic migrations)", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
cli.add_typer(token_cli, name="token")
cli.command()(wait)


def _upgrade(settings: Settings, revision: str = "head") -> None:
    from app.db import make_engine
    from app.migrate import upgrade

    settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    upgrade(engine, revision)
    engine.dispose()


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="target revision")] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    settings = _settings()
    _upgrade(settings, revision)
    typer.echo(f"database at {revision}: {_redact(settings.sqlalchemy_url)}")


@db_cli.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="target revision, e.g. -1 or base")]) -> None:
    """Revert migrations down to REVISION."""
    from app.db import make_engine
    from app.migrate import downgrade

    engine = make_engine(_settings().sqlalchemy_url)
    downgrade(engine, revision)
    engine.dispose()
    typer.echo(f"database at {revision}")


def worker_command(settings: Settings, name: str = "boxal@%h") -> list[str]:
    """The Celery worker command line that both `boxal worker` and the embedded mode run: tasks run in
    threads of the one worker process, so that a kill takes it whole and it is restarted (worker/limits.py
    says why not Celery's prefork pool)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        "boxal",
        "-n",
        name,
        "--loglevel",
        settings.log_level.upper(),
        "--pool",
        "threads",
        "-c",
        str(settings.worker_concurrency),
    ]
    if settings.is_embedded_broker:  # the filesystem transport has no broadcast
        command += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
    return command


def _worker_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("torch", "torchvision"))


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default BOXAL_HOST, 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default BOXAL_PORT, 8000)")] = None,
    migrate: Annotated[bool, typer.Option(help="apply migrations first")] = True,
    worker: Annotated[bool, typer.Option(help="start a worker process beside the API")] = True,
) -> None:
    """Run the API and a worker beside it (embedded default: SQLite, artifacts and a serverless task
    queue under ./boxal-data)."""
    from app import worker_state
    from app.lifeline import watch_parent
    from app.serving import EmbeddedWorker, prepare_metrics
    from app.serving import serve as run_server

    settings = _settings()
    prepare_metrics(settings, owns_every_process=worker)  # first: its processes record into one directory
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    watch_parent(settings)  # started by `boxal simulate`: gone with it
    if migrate:
        _upgrade(settings)
    typer.echo(f"admin token: {_ensure_admin(settings)}")
    embedded = None
    worker_state.forget(settings)  # what an earlier run left says nothing of this one's worker
    if worker and _worker_installed():
        embedded = EmbeddedWorker(worker_command(settings, "boxal-embedded@%h"), settings)
        typer.echo(f"worker started (pid {embedded.pid})")
    elif worker:
        typer.echo(
            "no worker started: the detection engine is not installed (pip install 'boxal[worker]'); "
            "rounds wait until a worker (boxal worker) picks them up",
            err=True,
        )
    host, port = host or settings.host, port or settings.port
    typer.echo(
        f"boxal serving on http://{host}:{port}  (data: {settings.resolved_data_dir}, "
        f"database: {_redact(settings.sqlalchemy_url)}, {settings.api_workers} API process(es); "
        f"on SIGTERM it stops within {settings.shutdown_grace_s:.0f} s)"
    )
    run_server(settings, host, port, embedded)


@cli.command("worker")
def run_worker(name: Annotated[str, typer.Option(help="Celery node name")] = "boxal@%h") -> None:
    """Run a worker that trains, scores and evaluates rounds (production: BOXAL_BROKER_URL=redis://...)."""
    from app.serving import prepare_metrics

    settings = _settings()
    prepare_metrics(settings, owns_every_process=False)  # the API's scrape sums it in (same directory)
    if not _worker_installed():
        typer.echo("the detection engine is not installed: pip install 'boxal[worker]'", err=True)
        raise typer.Exit(2)
    command = worker_command(settings, name)
    os.execv(command[0], command)


def _ensure_admin(settings: Settings) -> str:
    from app.auth.service import ensure_admin_token
    from app.db import Database

    db = Database.for_settings(settings)
    try:
        with db.transaction() as session:
            return ensure_admin_token(session, settings)
    finally:
        db.dispose()


def _plugins() -> None:
    """Commands of installed packages: each ``boxal.commands`` entry point is called with this CLI."""
    for entry_point in entry_points(group="boxal.commands"):
        entry_point.load()(cli)


_plugins()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
