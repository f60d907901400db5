"""Simulated annotators under load: N threads lease, answer (sometimes give back) for a while, over HTTP.

Everything each one saw is recorded: latencies and statuses per endpoint, every answer the server
acknowledged, and a ledger of who holds which box, which flags any box handed to a second annotator
while the first still held it. A box is marked free before its release is sent, so the ledger can miss a
double lease only in that instant, never report one that did not happen.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    acknowledged: set[int] = field(default_factory=set)  # query ids whose answer got a 2xx
    answered_by: set[str] = field(default_factory=set)  # annotators with at least one acknowledged answer
    released: set[int] = field(default_factory=set)
    double_leases: list[tuple[int, str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # bodies of 503 answers (a dependency was down)
    duration_s: float = 0.0

    def percentile(self, endpoint: str, q: float) -> float:
        values = sorted(self.latencies[endpoint])
        return values[min(len(values) - 1, int(q * len(values)))] * 1000 if values else float("nan")

    def server_errors(self) -> dict[str, dict[int, int]]:
        return {
            e: {s: n for s, n in codes.items() if s >= 500}
            for e, codes in self.statuses.items()
            if any(s >= 500 for s in codes)
        }


def run(
    url: str,
    token: str,
    project_id: int,
    *,
    annotators: int = 32,
    seconds: float = 60.0,
    k: int = 5,
    give_back: float = 0.1,
    on_tick: Callable[[LoadResult], None] | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Load for ``seconds``, or until ``stop`` is set if that comes first."""
    result = LoadResult()
    stop = stop or threading.Event()
    holders: dict[int, str] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def timed(http: httpx.Client, endpoint: str, method: str, path: str, **kwargs) -> httpx.Response | None:
        start = time.perf_counter()
        try:
            response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            with lock:
                result.statuses[endpoint][0] += 1
                result.errors.append(f"{endpoint}: {type(exc).__name__}")
            return None
        with lock:
            result.latencies[endpoint].append(time.perf_counter() - start)
            result.statuses[endpoint][response.status_code] += 1
            if response.status_code >= 500 and response.status_code != 503:
                result.errors.append(f"{endpoint}: {response.status_code} {response.text[:200]}")
            elif response.status_code == 503 and len(result.unavailable) < 20:
                result.unavailable.append(response.text[:300])
        return response

    def annotator(index: int) -> None:
        name = f"annotator-{index:02d}"
        rng = random.Random(index)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            while time.monotonic() < deadline and not stop.is_set():
                response = timed(
                    http,
                    "lease",
                    "POST",
                    f"/v1/projects/{project_id}/queries",
                    json={"k": k, "annotator": name},
                )
                if response is None or response.status_code != 200:
                    time.sleep(0.2)
                    continue
                queries = response.json()["queries"]
                if not queries:
                    return
                with lock:
                    for q in queries:
                        holder = holders.get(q["box_id"])
                        if holder is not None and holder != name:
                            result.double_leases.append((q["box_id"], holder, name))
                        holders[q["box_id"]] = name
                keep = [q for q in queries if rng.random() >= give_back]
                for q in queries:
                    if q in keep:
                        continue
                    with lock:  # free first: a release that races a new lease must not look like a double
                        holders.pop(q["box_id"], None)
                    released = timed(
                        http, "release", "DELETE", f"/v1/projects/{project_id}/queries/{q['query_id']}"
                    )
                    if released is not None and released.status_code == 204:
                        with lock:
                            result.released.add(q["query_id"])
                if not keep:
                    continue
                labels = [
                    {
                        "query_id": q["query_id"],
                        "action": rng.choice(["accept", "background", "duplicate"]),
                        "duration_ms": rng.randint(800, 9000),
                    }
                    for q in keep
                ]
                for _attempt in range(20):  # an answer is retried until the server takes it (503: retry)
                    answered = timed(
                        http, "answer", "POST", f"/v1/projects/{project_id}/labels", json={"labels": labels}
                    )
                    if answered is not None and answered.status_code == 200:
                        with lock:
                            result.acknowledged.update(q["query_id"] for q in keep)
                            result.answered_by.add(name)
                            for q in keep:
                                holders.pop(q["box_id"], None)
                        break
                    time.sleep(0.5)

    start = time.monotonic()
    with ThreadPoolExecutor(annotators) as pool:
        futures = [pool.submit(annotator, i) for i in range(annotators)]
        while not all(f.done() for f in futures):
            time.sleep(1.0)
            if on_tick:
                on_tick(result)
        for future in futures:
            future.result()
    result.duration_s = time.monotonic() - start
    return result
