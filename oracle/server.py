"""A boxal server of this run's own: `boxal serve` (API and worker) as a child process on a free
loopback port, over HTTP like any other, stopped with SIGTERM when done."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


@contextmanager
def embedded_server(
    data_dir: Path,
    *,
    image_root: Path | None = None,
    worker: bool = True,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[tuple[str, str]]:
    """`boxal serve` on a free loopback port with its data under ``data_dir`` (SQLite and a filesystem
    broker unless ``env`` names others); yields its URL and an admin token made for this run."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "bxl_" + secrets.token_urlsafe(32)
    inherited = {k: v for k, v in os.environ.items() if k not in ("BOXAL_DATABASE_URL", "BOXAL_BROKER_URL")}
    environment = {
        **inherited,
        "BOXAL_DATA_DIR": str(data_dir),
        "BOXAL_LOG_LEVEL": "warning",
        "BOXAL_ADMIN_TOKEN": token,
        "BOXAL_PARENT_PID": str(os.getpid()),  # it and its worker go if this process is killed
        **({"BOXAL_IMAGE_ROOTS": str(image_root.resolve())} if image_root else {}),
        **(env or {}),
    }
    log_path = log or data_dir.parent / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command + ([] if worker else ["--no-worker"]),
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(process, url, log_path)
        yield url, token
    finally:
        process.terminate()  # boxal serve stops its worker too, within BOXAL_SHUTDOWN_GRACE_S
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


def _wait_until_up(process: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded server exited; see {log}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"the embedded server did not start; see {log}")
        time.sleep(0.3)
