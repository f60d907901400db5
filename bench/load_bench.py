"""Simulated annotators against one API process on PostgreSQL, on loopback.

    python bench/load_bench.py --annotators 32 --seconds 60

A fresh database holds one project with a pool of 40,000 scored boxes; N annotators (threads) lease k=5,
give back about one lease in ten, and answer the rest in one batch, until the time is up. Prints lease and
answer latencies, throughput, and the checks the load test asserts (tests/app/test_load_faults.py).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from bench.pool import fill_pool  # noqa: E402
from oracle import load  # noqa: E402
from oracle.server import embedded_server  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--annotators", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--boxes", type=int, default=40_000)
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "BOXAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        args.annotators, args.seconds, args.boxes = 4, 3.0, 2_000
    admin_url = make_url(args.pg_url)
    name = f"boxal_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    try:
        upgrade(database.engine)
        with (
            tempfile.TemporaryDirectory() as tmp,
            embedded_server(Path(tmp) / "data", worker=False, env={"BOXAL_DATABASE_URL": url}) as (
                base,
                token,
            ),
        ):
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=base, headers=headers) as client:
                pid = client.post(
                    "/v1/projects",
                    json={"name": "load", "classes": ["a", "b"], "settings": {"round_size": 1_000_000}},
                ).json()["id"]
            fill_pool(database, pid, args.boxes)
            started = time.monotonic()
            result = load.run(base, token, pid, annotators=args.annotators, seconds=args.seconds)
            elapsed = time.monotonic() - started
    finally:
        database.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    requests = sum(len(v) for v in result.latencies.values())
    server_errors = sum(
        n for codes in result.statuses.values() for status, n in codes.items() if status >= 500
    )
    print(
        "| API processes | annotators | run | lease p50 / p99 (ms) | answer batch p50 / p99 (ms) "
        "| requests/s | answers acknowledged | leases given back | 5xx | boxes leased twice |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    processes = os.environ.get("BOXAL_API_WORKERS", "1")
    print(
        f"| {processes} | {args.annotators} | {elapsed:.0f} s | {result.percentile('lease', 0.5):.0f} / "
        f"{result.percentile('lease', 0.99):.0f} | {result.percentile('answer', 0.5):.0f} / "
        f"{result.percentile('answer', 0.99):.0f} | {requests / elapsed:.0f} | {len(result.acknowledged)} | "
        f"{len(result.released)} | {server_errors} | "
        f"{len(result.double_leases)} |"
    )


if __name__ == "__main__":
    main()
