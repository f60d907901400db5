"""Lease and answer speed at 10k and 1M unlabeled boxes, on SQLite and PostgreSQL.

    python bench/lease_bench.py --sizes 10000 1000000 --db sqlite postgresql

For each database and pool size: a fresh migrated database is filled with one project whose pool
holds N scored unlabeled boxes (20 per image), then
- service: the lease transaction alone (k=10, service call + commit), one client, in this process;
- http: POST /queries k=10 against a uvicorn server process, 1 client and 16 concurrent clients,
  each lease answered right after (as annotators do), so the walk never wades through held leases;
- labels: POST /labels with batches of 50 answers, labels per second.
``--ranking own`` (the default) serves the boxes' own informativeness, as before any round (a walk down
``ix_boxes_queue``); ``--ranking round`` opens a round that scored every box, so leases walk its
staged scores (``ix_box_scores_queue``), as in every round after the first.
Prints a markdown table; figures go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import Progress
from sqlalchemy import create_engine, insert, text, update
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import Box, Image, Project, Round, utcnow  # noqa: E402
from app.projects.schemas import ProjectCreate, ProjectSettings  # noqa: E402
from app.projects.service import create_project, get_project  # noqa: E402
from app.queries.service import lease  # noqa: E402
from app.settings import Settings  # noqa: E402
from oracle.server import embedded_server  # noqa: E402

console = Console()
PER_IMAGE = 20
PG_URL = os.environ.get("BOXAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, workdir: Path, pg_url: str) -> tuple[str, callable]:
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:6]}.db"
        return f"sqlite:///{path}", lambda: path.unlink(missing_ok=True)
    admin_url = make_url(pg_url)
    name = f"boxal_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return admin_url.set(database=name).render_as_string(hide_password=False), drop


def fill(db: Database, boxes: int, settings: Settings) -> int:
    with db.transaction() as session:
        project = create_project(
            session,
            ProjectCreate(
                name="bench",
                classes=["a", "b", "c"],
                settings=ProjectSettings(round_size=1_000_000, lease_ttl_s=3600),
            ),
            settings,
        )
        pid = project.id
    images = boxes // PER_IMAGE
    rng = random.Random(0)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"filling {boxes:,} boxes", total=images)
        with db.engine.begin() as conn:
            rows = [
                {
                    "project_id": pid,
                    "split": "pool",
                    "external_id": f"im{i}",
                    "file_name": f"im{i}.jpg",
                    "path": f"/nonexistent/im{i}.jpg",
                    "width": 640,
                    "height": 480,
                    "fully_labeled": False,
                    "created_at": utcnow(),
                }
                for i in range(images)
            ]
            for start in range(0, images, 20000):
                conn.execute(insert(Image), rows[start : start + 20000])
            image_ids = [r[0] for r in conn.execute(text("SELECT id FROM images ORDER BY id"))]
        chunk = 50_000 // PER_IMAGE
        now = utcnow()
        for start in range(0, images, chunk):
            batch = []
            for image_id in image_ids[start : start + chunk]:
                for j in range(PER_IMAGE):
                    x = 10.0 + 25 * j
                    batch.append(
                        {
                            "project_id": pid,
                            "image_id": image_id,
                            "source": "predicted",
                            "status": "unlabeled",
                            "x1": x,
                            "y1": 10.0,
                            "x2": x + 20,
                            "y2": 60.0,
                            "label": j % 3,
                            "score": 0.5,
                            "informativeness": rng.random(),
                            "model_version": "bench",
                            "round_predicted": 0,
                            "created_at": now,
                        }
                    )
            with db.engine.begin() as conn:
                conn.execute(insert(Box), batch)
            progress.update(task, advance=len(image_ids[start : start + chunk]))
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return pid


def open_scored_round(db: Database, pid: int) -> None:
    """Round 1 open with every box scored (in SQL, at any size): leases walk its staged scores."""
    random_sql = "random()" if db.dialect == "postgresql" else "abs(random()) / 9223372036854775807.0"
    with db.transaction() as session:
        session.execute(update(Round).where(Round.project_id == pid).values(state="closed"))
        round_ = Round(project_id=pid, number=1, state="open", model_version="bench-1", opened_at=utcnow())
        session.add(round_)
        session.flush()
        session.execute(
            text(
                "INSERT INTO box_scores (round_id, box_id, informativeness) "
                f"SELECT :r, id, {random_sql} FROM boxes WHERE project_id = :p"
            ),
            {"r": round_.id, "p": pid},
        )
        session.execute(update(Project).where(Project.id == pid).values(serving_round=1))
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def explain(db: Database, pid: int, ranking: str = "own") -> str:
    if ranking == "round":
        sql = (
            "SELECT b.id FROM boxes b JOIN box_scores s ON s.box_id = b.id WHERE s.round_id = "
            "(SELECT id FROM rounds WHERE project_id = :p AND number = 1) AND b.status = 'unlabeled' "
            "AND (b.lease_expires_at IS NULL OR b.lease_expires_at <= :now) "
            "ORDER BY s.informativeness DESC, s.box_id LIMIT 10"
        )
        prefix, suffix = (
            ("EXPLAIN QUERY PLAN ", "")
            if db.dialect == "sqlite"
            else ("EXPLAIN ", " FOR UPDATE OF b SKIP LOCKED")
        )
        with db.engine.connect() as conn:
            rows = conn.execute(text(prefix + sql + suffix), {"p": pid, "now": utcnow()})
            return " / ".join(str(r[-1]).strip() for r in rows)
    if db.dialect == "sqlite":
        sql = (
            "EXPLAIN QUERY PLAN SELECT id FROM boxes WHERE project_id = :p AND status = 'unlabeled' "
            "AND (lease_expires_at IS NULL OR lease_expires_at <= :now) ORDER BY informativeness DESC, id "
            "LIMIT 10"
        )
        with db.engine.connect() as conn:
            return " / ".join(str(r[-1]) for r in conn.execute(text(sql), {"p": pid, "now": utcnow()}))
    sql = (
        "EXPLAIN SELECT id FROM boxes WHERE project_id = :p AND status = 'unlabeled' "
        "AND (lease_expires_at IS NULL OR lease_expires_at <= :now) "
        "ORDER BY informativeness DESC NULLS LAST, id LIMIT 10 FOR UPDATE SKIP LOCKED"
    )
    with db.engine.connect() as conn:
        return " / ".join(r[0].strip() for r in conn.execute(text(sql), {"p": pid, "now": utcnow()}))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def service_leases(db: Database, pid: int, n: int, settings: Settings) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with db.transaction() as session:
            queries = lease(
                session,
                get_project(session, pid),
                k=10,
                annotator="svc",
                unit="box",
                now=utcnow(),
                settings=settings,
            )
        times.append(time.perf_counter() - start)
        with db.transaction() as session:  # answered, as an annotator would (not timed)
            session.execute(
                update(Box).where(Box.id.in_([q.box_id for q in queries])).values(status="background")
            )
    return times


def annotator(base: str, token: str, pid: int, name: str, n: int, k: int) -> tuple[list[float], list[float]]:
    lease_times, label_times = [], []
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http:
        for _ in range(n):
            start = time.perf_counter()
            response = http.post(f"/v1/projects/{pid}/queries", json={"k": k, "annotator": name})
            lease_times.append(time.perf_counter() - start)
            response.raise_for_status()
            labels = [{"query_id": q["query_id"], "action": "background"} for q in response.json()["queries"]]
            if not labels:
                raise RuntimeError("the pool ran dry: lower --leases")
            start = time.perf_counter()
            http.post(f"/v1/projects/{pid}/labels", json={"labels": labels}).raise_for_status()
            label_times.append(time.perf_counter() - start)
    return lease_times, label_times


def http_run(
    base: str, token: str, pid: int, clients: int, n: int, k: int
) -> tuple[list[float], list[float], float]:
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: annotator(base, token, pid, f"a{i}", n, k), range(clients)))
    wall = time.perf_counter() - start
    return [t for r in results for t in r[0]], [t for r in results for t in r[1]], wall


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 1_000_000])
    parser.add_argument("--leases", type=int, default=400, help="timed leases per measurement")
    parser.add_argument(
        "--ranking",
        choices=["own", "round"],
        default="own",
        help="own: the boxes' own informativeness (before any round); round: a round's staged scores",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    parser.add_argument(
        "--pg-url",
        default=PG_URL,
    )
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.leases = [10_000], 40
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.db:
            for size in args.sizes:
                url, drop = fresh_database(kind, workdir, args.pg_url)
                db = Database(url)
                try:
                    upgrade(db.engine)
                    t0 = time.perf_counter()
                    settings = Settings(data_dir=workdir / "data", database_url=url, _env_file=None)
                    pid = fill(db, size, settings)
                    if args.ranking == "round":
                        open_scored_round(db, pid)
                    console.print(
                        f"[bold]{kind} {size:,} boxes[/] filled in {time.perf_counter() - t0:.0f}s; "
                        f"plan: {explain(db, pid, args.ranking)}"
                    )
                    n = min(args.leases, size // 40)  # leaves the pool at least ~10% full at the end
                    svc = service_leases(db, pid, n, settings)
                    # boxal serve (API only) with an admin token it registers, as an operator runs it
                    server = embedded_server(
                        workdir / "data", worker=False, env={"BOXAL_DATABASE_URL": url, "BOXAL_MAX_K": "100"}
                    )
                    with server as (base, token):
                        one_lease, _, _ = http_run(base, token, pid, 1, n, 10)
                        many_lease, _, many_wall = http_run(base, token, pid, 16, max(10, n // 16), 10)
                        _, batch50, _ = http_run(base, token, pid, 1, max(10, n // 10), 50)
                    row = {
                        "db": kind,
                        "boxes": size,
                        "svc_p50": pct(svc, 0.5),
                        "svc_p99": pct(svc, 0.99),
                        "http1_p50": pct(one_lease, 0.5),
                        "http1_p99": pct(one_lease, 0.99),
                        "http16_p50": pct(many_lease, 0.5),
                        "http16_p99": pct(many_lease, 0.99),
                        "labels_per_s": 50 / statistics.median(batch50),
                        "http16_leases_per_s": len(many_lease) / many_wall,
                    }
                    rows.append(row)
                    console.print(row)
                finally:
                    db.dispose()
                    drop()
    print(f"\nranking walked: {args.ranking}")
    print(
        "\n| database | boxes | lease txn p50 / p99 (ms) | HTTP lease, 1 client p50 / p99 (ms) | "
        "HTTP lease, 16 clients p50 / p99 (ms) | 16 clients: lease+answer cycles/s | "
        "answers/s (batches of 50) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(
            f"| {r['db']} | {r['boxes']:,} | {r['svc_p50']:.1f} / {r['svc_p99']:.1f} | "
            f"{r['http1_p50']:.1f} / {r['http1_p99']:.1f} | {r['http16_p50']:.1f} / {r['http16_p99']:.1f} | "
            f"{r['http16_leases_per_s']:.0f} | {r['labels_per_s']:.0f} |"
        )
    by = {(r["db"], r["boxes"]): r for r in rows}
    for kind in args.db:
        small, big = by.get((kind, min(args.sizes))), by.get((kind, max(args.sizes)))
        if small and big and small is not big:
            print(
                f"\n{kind}: p99 lease txn at {max(args.sizes):,} / at {min(args.sizes):,} = "
                f"{big['svc_p99'] / small['svc_p99']:.2f}x; HTTP 1-client p99 ratio "
                f"{big['http1_p99'] / small['http1_p99']:.2f}x"
            )


if __name__ == "__main__":
    main()
