"""How `boxal serve` runs and stops: uvicorn with a bounded graceful shutdown, the embedded worker beside it.

On SIGTERM or Ctrl-C the server stops accepting connections, requests in flight get
``BOXAL_SHUTDOWN_GRACE_S`` to finish (then uvicorn cancels them), the embedded worker is told to stop at
the same moment and is killed, with its pool processes, if it has not stopped by then. Request threads
still inside a blocking call after that are not waited for: the process exits and their open
transactions roll back (nothing they did was acknowledged).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

import uvicorn

from app import worker_state
from app.lifeline import PARENT_ENV, child_env
from app.settings import Settings

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess directory (app/metrics.py)

log = logging.getLogger("boxal.serve")
THREAD_JOIN_S = 1.0  # after the grace period: how long idle request threads get to wind down
STOP_MARGIN_S = 1.0  # of the grace period, kept for killing a worker that has not stopped, and exiting


class EmbeddedWorker:
    """The Celery worker process `boxal serve` starts, in a process group of its own, and keeps running.

    A supervisor thread watches it: when it exits (a crash, the OOM killer, a SIGKILL) its group is killed
    (pool processes that outlived it), and a new one is started after a backoff of 1 s doubling to 30 s; a
    worker that stayed up ``STABLE_S`` resets the count. After ``max_restarts`` exits in a row it is given
    up on (logged, /health says "failed"). Jobs the dead worker held are taken back by the new one's reaper
    (their holder's process is gone), so a round under way completes. Its state is in the data dir for
    /health (app/worker_state.py)."""

    BACKOFF_S = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)
    STABLE_S = 60.0
    POLL_S = 0.25

    def __init__(self, command: list[str], settings: Settings) -> None:
        self.command = command
        self.settings = settings
        self.max_restarts = settings.worker_restarts
        self.restarts = 0  # in a row: reset once a worker stays up STABLE_S
        self.total_restarts = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the process is replaced under it; stopping reads it under it
        self._asked = False
        self.process = self._spawn()
        self._thread = threading.Thread(target=self._supervise, name="boxal-worker-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> subprocess.Popen:
        # its own group, so that stopping it reaches its pool; it stops itself if this process is killed
        process = subprocess.Popen(self.command, start_new_session=True, env={**os.environ, **child_env()})
        self._started_at = time.monotonic()
        worker_state.record(
            self.settings, "running", pid=process.pid, restarts=self.total_restarts, last_exit=None
        )
        return process

    @property
    def pid(self) -> int:
        return self.process.pid

    def _supervise(self) -> None:
        while not self._stop.wait(self.POLL_S):
            with self._lock:
                if self._stop.is_set():
                    return
                code = self.process.poll()
                if code is None:
                    if self.restarts and time.monotonic() - self._started_at > self.STABLE_S:
                        self.restarts = 0
                    continue
                self._kill_group()  # its pool processes may have outlived it
                if self.restarts >= self.max_restarts:
                    log.error(
                        "the embedded worker (pid %s) exited with %s after %d restart(s) in a row; not "
                        "restarting it (BOXAL_WORKER_RESTARTS=%d): rounds wait until a worker runs",
                        self.process.pid, code, self.restarts, self.max_restarts,
                    )  # fmt: skip
                    worker_state.record(
                        self.settings, "failed", pid=None, restarts=self.total_restarts, last_exit=code
                    )
                    return
                delay = self.BACKOFF_S[min(self.restarts, len(self.BACKOFF_S) - 1)]
                log.error(
                    "the embedded worker (pid %s) exited with %s; restarting it in %.0f s (restart %d of at "
                    "most %d in a row)", self.process.pid, code, delay, self.restarts + 1, self.max_restarts,
                )  # fmt: skip
                worker_state.record(
                    self.settings, "restarting", pid=None, restarts=self.total_restarts, last_exit=code
                )
            if self._stop.wait(delay):
                return
            with self._lock:
                if self._stop.is_set():
                    return
                self.restarts += 1
                self.total_restarts += 1
                self.process = self._spawn()
                log.warning("embedded worker restarted (pid %s)", self.process.pid)

    def ask_to_stop(self) -> None:
        """Celery's warm shutdown: finish the current task, take no new ones; no restart after it."""
        self._stop.set()
        with self._lock:
            if not self._asked and self.process.poll() is None:
                self._asked = True
                self.process.send_signal(signal.SIGTERM)  # the main process: it stops its pool itself

    def stop(self, timeout: float) -> None:
        self.ask_to_stop()
        with self._lock:
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "the worker did not stop within %.0f s: killing it and its pool processes", timeout
                )
                self._kill_group()
                self.process.wait(timeout=10)
            else:  # its pool processes, should any have outlived it
                self._kill_group()
            code = self.process.poll()
            restarts = self.total_restarts
            worker_state.record(self.settings, "stopped", pid=None, restarts=restarts, last_exit=code)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):  # the group is already gone
            os.killpg(self.process.pid, signal.SIGKILL)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, worker: EmbeddedWorker | None) -> None:
        super().__init__(config)
        self.worker = worker
        self.stop_requested_at: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.should_exit:
            self.stop_requested_at = time.monotonic()
            log.warning(
                "%s received: stopping; requests in flight have %s s to finish",
                signal.Signals(sig).name,
                self.config.timeout_graceful_shutdown,
            )
            if self.worker is not None:
                self.worker.ask_to_stop()
        super().handle_exit(sig, frame)


def prepare_metrics(settings: Settings, *, owns_every_process: bool) -> Path:
    """One metrics directory for every process `boxal serve` starts (API processes, the worker and its
    pool); must run before anything imports prometheus_client, which reads the variable at import.

    When serve starts the worker too, every writer is its own: a previous run's samples are removed.
    Otherwise (``--no-worker``, workers in other containers sharing the directory) nothing is removed, so
    a running worker's files are never taken from under it; totals then carry across API restarts."""
    folder = Path(os.environ.get(METRICS_ENV) or settings.resolved_data_dir / "metrics")
    folder.mkdir(parents=True, exist_ok=True)
    if owns_every_process:
        for stale in folder.glob("*.db"):
            stale.unlink()
    os.environ[METRICS_ENV] = str(folder)
    return folder


def serve(settings: Settings, host: str, port: int, worker: EmbeddedWorker | None) -> None:
    """Serve until SIGTERM/SIGINT, then stop within about ``shutdown_grace_s`` (plus a second)."""
    grace = math.ceil(settings.shutdown_grace_s)
    server: _Server | None = None
    # uvicorn re-raises the signal it stopped on once it has restored the previous handler; the default
    # SIGTERM handler would end this process there, before the worker is stopped
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        if settings.api_workers > 1:  # each process builds the app from the same environment
            os.environ[PARENT_ENV] = str(os.getpid())  # each watches this one (app/main.py)
            uvicorn.run(
                "app.main:create_app",
                factory=True,
                host=host,
                port=port,
                workers=settings.api_workers,
                log_level=settings.log_level,
                timeout_graceful_shutdown=grace,
            )
        else:
            from app.main import create_app

            config = uvicorn.Config(
                create_app(settings),
                host=host,
                port=port,
                log_level=settings.log_level,
                timeout_graceful_shutdown=grace,
            )
            server = _Server(config, worker)
            server.run()
    finally:
        if worker is not None:  # it was told to stop with the server: it gets what is left of the grace,
            # less the moment killing it and exiting take (a task it is running is taken on after a restart)
            since = server.stop_requested_at if server is not None else None
            left = grace - (time.monotonic() - since) if since is not None else grace
            worker.stop(timeout=max(0.5, left - STOP_MARGIN_S))
        _exit_past_busy_threads()


def _exit_past_busy_threads() -> None:
    current = threading.current_thread()
    busy = [t for t in threading.enumerate() if t is not current and not t.daemon and t.is_alive()]
    deadline = time.monotonic() + THREAD_JOIN_S
    for thread in busy:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    still = [t for t in busy if t.is_alive()]
    if still:
        log.warning(
            "%d request thread(s) still inside a blocking call after the grace period; exiting without "
            "them (their open transactions roll back; nothing they did was acknowledged)",
            len(still),
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    log.info("stopped")
