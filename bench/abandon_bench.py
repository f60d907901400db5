"""How long the server takes to answer again after a burst of clients that gave up mid-request.

    python bench/abandon_bench.py --requests 400 --bursts 3 --db sqlite postgresql

One `boxal serve` (API only) per database, a project with 4,000 scored boxes and 100 leases the abusers
answer. Each burst is ``--requests`` requests (bench/abuse.py: the abandoned-request test's mix) whose
clients close or reset 1-8 ms after sending. Printed per burst: a write's latency on the idle server just
before it (the median of five: the baseline, same process), the first write's and `/health`'s latency
right after it, their ratio, and how many requests the server stopped because their client had gone
(499 in /metrics).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from bench.abuse import abuse  # noqa: E402
from bench.lease_bench import PG_URL, fresh_database  # noqa: E402
from bench.pool import fill_pool  # noqa: E402
from oracle.server import embedded_server  # noqa: E402

STOPPED = re.compile(r'^boxal_request_seconds_count\{[^}]*status="499"[^}]*\} (\S+)$', re.M)


def _timed(client: httpx.Client, method: str, path: str, body: dict | None = None) -> float:
    started = time.perf_counter()
    response = client.request(method, path, json=body)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def _stopped(client: httpx.Client) -> int:
    return int(sum(float(n) for n in STOPPED.findall(client.get("/metrics").text)))


def measure(kind: str, requests: int, bursts: int, workdir: Path) -> list[dict[str, object]]:
    url, drop = fresh_database(kind, workdir, PG_URL)
    database = Database(url)
    rows: list[dict[str, object]] = []
    try:
        upgrade(database.engine)
        env = {"BOXAL_DATABASE_URL": url}
        with embedded_server(workdir / f"data-{kind}", worker=False, env=env) as (base, token):
            port = int(base.rsplit(":", 1)[1])
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
                create = {"name": "abused", "classes": ["a", "b"], "settings": {"round_size": 1_000_000}}
                pid = c.post("/v1/projects", json=create).json()["id"]
                fill_pool(database, pid, 4_000)
                leased = [
                    q["query_id"]
                    for q in c.post(
                        f"/v1/projects/{pid}/queries", json={"k": 100, "annotator": "ghost"}
                    ).json()["queries"]
                ]
                for burst in range(1, bursts + 1):
                    name = f"{kind}-{burst}"
                    idle = statistics.median(
                        _timed(c, "POST", "/v1/projects", {"name": f"idle-{name}-{i}", "classes": ["a"]})
                        for i in range(5)
                    )
                    before = _stopped(c)
                    abuse(port, token, pid, leased, requests, seed=burst)
                    write = _timed(c, "POST", "/v1/projects", {"name": f"after-{name}", "classes": ["a"]})
                    health = _timed(c, "GET", "/health")
                    rows.append(
                        {
                            "db": kind,
                            "burst": burst,
                            "idle": idle,
                            "write": write,
                            "health": health,
                            "stopped": _stopped(c) - before,
                        }
                    )
    finally:
        database.dispose()
        drop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="abandoned requests per burst")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--db", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.bursts = 40, 1
    with tempfile.TemporaryDirectory() as tmp:
        rows = [row for kind in args.db for row in measure(kind, args.requests, args.bursts, Path(tmp))]
    print(f"{args.requests} abandoned requests per burst")
    print(
        "| database | burst | idle write (ms) | first write after (ms) | ratio | /health after (ms) "
        "| stopped (499) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['db']} | {r['burst']} | {r['idle']:.0f} | {r['write']:.0f} | "
            f"{r['write'] / r['idle']:.0f}x | {r['health']:.0f} | {r['stopped']} |"  # type: ignore[operator]
        )


if __name__ == "__main__":
    main()
