"""Following a job over HTTP with a progress bar (rich): for the CLI and the experiment runner."""

from __future__ import annotations

import time

import httpx
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from boxal.watchdog import PAUSED, STALL_S, Watchdog


def describe(progress: dict) -> str:
    stage = progress.get("stage", "queued")
    if stage == "training" and progress.get("steps"):
        return (
            f"training step {progress['step']}/{progress['steps']} (epoch {progress.get('epoch', '?')} of "
            f"{progress.get('epochs', '?')}), loss {progress.get('loss', '?')}"
        )
    if stage == "training" and "epoch" in progress:
        epochs = progress.get("epochs", "?")
        return f"training epoch {progress['epoch']}/{epochs}, loss {progress.get('loss', '?')}"
    if stage == "scoring" and "shards_total" in progress:
        return (
            f"scoring {progress.get('images_scored', 0)} images, "
            f"shard {progress.get('shards_done', 0)}/{progress['shards_total']}"
        )
    return str(stage)


def follow_job(
    url: str,
    job_id: str,
    *,
    token: str | None = None,
    timeout: float = 24 * 3600,
    poll_s: float = 1.0,
    transient: bool = False,
    stall_s: float = STALL_S,
) -> str:
    """Poll GET /v1/jobs/{id} until it ends; returns its final state ('succeeded' or 'failed'). Raises
    ServerStuck when the job shows no progress for ``stall_s`` or the server's worker is gone (the
    watchdog's rules), TimeoutError past ``timeout``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout
    with (
        httpx.Client(base_url=url, headers=headers, timeout=30) as client,
        Progress(
            TextColumn("[bold]job {task.fields[job]}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            transient=transient,
        ) as bar,
    ):
        task = bar.add_task("queued", total=1.0, job=job_id[:8])

        def health() -> dict:
            return dict(client.get("/health").json())

        watch = Watchdog(health, f"the log of {url}'s worker", stall_s=stall_s)
        while True:
            response = client.get(f"/v1/jobs/{job_id}")
            response.raise_for_status()
            job = response.json()
            if job["state"] not in ("succeeded", "failed"):
                watch(job)
            progress = job.get("progress") or {}
            description = PAUSED if watch.paused else describe(progress)
            bar.update(task, completed=float(progress.get("fraction", 0.0)), description=description)
            if job["state"] in ("succeeded", "failed"):
                if job["state"] == "failed":
                    bar.console.print(f"[red]job {job_id} failed: {job.get('error')}")
                else:
                    bar.update(task, completed=1.0, description="done")
                return str(job["state"])
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f} s")
            time.sleep(poll_s)
