"""Following a job without waiting forever (boxal/watchdog.py), on a clock the test moves."""

from __future__ import annotations

import pytest

from boxal.watchdog import ServerStuck, Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _job(stage: str = "training", beat: str = "t0") -> dict:
    return {"id": "j1", "state": "running", "progress": {"stage": stage}, "heartbeat_at": beat}


def _watch(worker: list[str], clock: Clock, **kwargs) -> Watchdog:
    return Watchdog(lambda: {"worker": worker[0]}, "the log x.log", clock=clock, **kwargs)


def test_a_job_that_moves_is_never_stopped_and_one_that_stalls_is() -> None:
    clock, worker = Clock(), ["ok"]
    watch = _watch(worker, clock, stall_s=60)
    for second in range(0, 600, 10):  # a heartbeat every 10 s for ten minutes
        clock.now = second
        watch(_job(beat=f"t{second}"))
    clock.now += 59
    watch(_job(beat="t590"))  # the same heartbeat, within the limit
    clock.now += 2
    with pytest.raises(ServerStuck, match=r"no progress for 60 s \(state running, stage training\); see the"):
        watch(_job(beat="t590"))


def test_a_worker_given_up_on_stops_the_wait_at_once() -> None:
    clock, worker = Clock(), ["ok"]
    watch = _watch(worker, clock)
    watch(_job())
    worker[0], clock.now = "failed", 2.5
    with pytest.raises(ServerStuck, match=r"worker exited and was not restarted.*see the log x\.log"):
        watch(_job(beat="t1"))


def test_a_worker_restarting_gets_a_grace_period_then_stops_the_wait() -> None:
    clock, worker = Clock(), ["restarting"]
    watch = _watch(worker, clock, worker_grace_s=30)
    for second in range(0, 31, 3):
        clock.now = second
        watch(_job(beat=f"t{second}"))
    worker[0] = "ok"  # back within the grace: the count starts again
    clock.now = 33
    watch(_job(beat="t33"))
    worker[0] = "starting"
    for second in range(36, 67, 3):
        clock.now = second
        watch(_job(beat=f"t{second}"))
    clock.now = 69
    with pytest.raises(ServerStuck, match=r"not been consuming for 33 s \(starting\)"):
        watch(_job(beat="t69"))


def test_an_external_worker_is_not_judged() -> None:
    clock, worker = Clock(), ["external"]
    watch = _watch(worker, clock, stall_s=10_000)
    for second in range(0, 3600, 5):
        clock.now = second
        watch(_job(beat=f"t{second}"))


def test_a_job_sent_again_by_a_reaper_is_no_sign_of_life() -> None:
    """A server before 2026-12-06 stamped every re-send into the job's progress (recovered_at), which kept
    a wedged job looking alive forever; only the job's own state, progress and heartbeat count."""
    clock, worker = Clock(), ["ok"]
    watch = _watch(worker, clock, stall_s=60)
    for second in range(0, 300, 10):  # re-sent every 10 s, no heartbeat, no progress of its own
        clock.now = second
        job = {**_job(beat="t0"), "progress": {"stage": "queued", "recovered_at": f"r{second}"}}
        if second <= 60:
            watch(job)
            continue
        with pytest.raises(ServerStuck, match="no progress for 60 s"):
            watch(job)
        break


def test_a_paused_worker_is_waited_for_however_long_and_judged_again_once_it_continues() -> None:
    """SIGSTOP, Ctrl-Z or a debugger: someone's deliberate act, undone by SIGCONT. Its job cannot move
    meanwhile, so the wait neither counts it as a stall nor as a worker gone."""
    clock, worker = Clock(), ["ok"]
    watch = _watch(worker, clock, stall_s=60, worker_grace_s=30)
    watch(_job(beat="t0"))
    worker[0] = "paused"
    for second in range(3, 3600, 3):  # an hour stopped, the job's heartbeat frozen
        clock.now = second
        watch(_job(beat="t0"))
        assert watch.paused
    worker[0] = "ok"  # continued: the job's silence counts again from the last poll that saw it paused
    clock.now += 3
    watch(_job(beat="t0"))
    assert not watch.paused
    clock.now += 56
    watch(_job(beat="t0"))
    clock.now += 3
    with pytest.raises(ServerStuck, match="no progress for 60 s"):
        watch(_job(beat="t0"))


def test_time_the_watcher_itself_was_stopped_counts_against_no_one() -> None:
    """Ctrl-Z of the whole `boxal simulate` stops the watcher, the server and the worker alike; after `fg`
    the job's heartbeat is as old as the pause, through no fault of the job."""
    clock, worker = Clock(), ["restarting"]
    watch = _watch(worker, clock, stall_s=60, worker_grace_s=30)
    watch(_job(beat="t0"))
    clock.now = 20
    watch(_job(beat="t0"))
    clock.now = 20 + 7200  # two hours stopped
    watch(_job(beat="t0"))  # 20 s of silence and of restarting, as before the stop
    worker[0] = "ok"
    clock.now += 39
    watch(_job(beat="t0"))
    clock.now += 3
    with pytest.raises(ServerStuck, match="no progress for 60 s"):
        watch(_job(beat="t0"))
