"""Following a round's job without waiting forever (`boxal simulate`, `boxal wait`): a job that shows no
sign of life for ``stall_s`` seconds, or a server whose worker is gone (given up on, or not consuming for
``worker_grace_s``), ends the wait with an error that says what happened and which log to read.

A pause is not a stall: while the worker is paused (SIGSTOP, Ctrl-Z, a debugger: someone's deliberate act,
undone by SIGCONT) the wait goes on without counting, and time the watcher itself was stopped (Ctrl-Z of
the whole `boxal simulate`, a machine asleep) counts against no one."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STALL_S = 900.0  # a job's heartbeat beats at least every few seconds while it trains, scores or evaluates
WORKER_GRACE_S = 120.0  # a restarted worker waits at most 30 s, then takes ~10-20 s to start consuming
HEALTH_EVERY_S = 2.0
# what a wait shows while the worker is paused
PAUSED = "worker paused: waiting for it to continue (kill -CONT)"
AWAY_S = 60.0  # a gap this long between two polls (made every few seconds) is time the watcher was stopped


class ServerStuck(RuntimeError):
    """The server will not finish the job: its worker is gone or the job stopped moving."""


@dataclass
class Watchdog:
    """Called with the job at every poll (Client.wait_job's ``on_progress``); raises ServerStuck."""

    health: Callable[[], dict[str, Any]]
    where: str  # what to read to find out why, e.g. "the server's log experiments/x/server.log"
    stall_s: float = STALL_S
    worker_grace_s: float = WORKER_GRACE_S
    clock: Callable[[], float] = time.monotonic
    paused: bool = field(default=False, init=False)  # the worker was paused when health was last read
    _sign: str | None = field(default=None, init=False)
    _moved_at: float = field(default=0.0, init=False)
    _seen_at: float | None = field(default=None, init=False)
    _checked_at: float | None = field(default=None, init=False)
    _down_since: float | None = field(default=None, init=False)

    def __call__(self, job: dict[str, Any]) -> None:
        now = self.clock()
        if self._seen_at is not None and now - self._seen_at > AWAY_S:  # this process was stopped meanwhile
            away = now - self._seen_at
            self._moved_at += away
            self._down_since = None if self._down_since is None else self._down_since + away
        self._seen_at = now
        # a change of the job's own state, progress or heartbeat is a sign of life; being sent again by a
        # reaper is not (servers before 2026-12-06 wrote that into the progress as recovered_at)
        progress = {k: v for k, v in (job.get("progress") or {}).items() if k != "recovered_at"}
        sign = json.dumps([job.get("state"), progress, job.get("heartbeat_at")], sort_keys=True)
        if sign != self._sign:
            self._sign, self._moved_at = sign, now
        self._judge_worker(job, now)
        if self.paused:  # its job cannot move until it continues: the wait is not a stall
            self._moved_at = now
        elif now - self._moved_at > self.stall_s:
            stage = (job.get("progress") or {}).get("stage", job.get("state"))
            raise ServerStuck(
                f"job {job['id']} showed no progress for {self.stall_s:.0f} s (state {job.get('state')}, "
                f"stage {stage}); see {self.where}"
            )

    def _judge_worker(self, job: dict[str, Any], now: float) -> None:
        if self._checked_at is not None and now - self._checked_at < HEALTH_EVERY_S:
            return
        self._checked_at = now
        worker = str(self.health().get("worker", "external"))
        self.paused = worker == "paused"
        if worker == "failed":
            raise ServerStuck(
                f"the server's worker exited and was not restarted, so job {job['id']} cannot finish; "
                f"see {self.where}"
            )
        if worker in ("ok", "external", "paused"):
            self._down_since = None
        elif self._down_since is None:
            self._down_since = now
        elif now - self._down_since > self.worker_grace_s:
            raise ServerStuck(
                f"the server's worker has not been consuming for {now - self._down_since:.0f} s ({worker}), "
                f"so job {job['id']} cannot finish; see {self.where}"
            )
