"""A round at scale: staging 2,000,000 box scores, switching the ranking, and leasing while it switches.

    python bench/round_bench.py --boxes 2000000 --db postgresql sqlite

For each database: a fresh migrated database holds one project with N unlabeled predicted boxes (20 per
image, as bench/lease_bench.py fills it). Round 1 stages and serves its ranking; then round 2, as the
workers do it:
- stage: every box's new informativeness written through `results.record_scores`, one transaction per
  scoring shard of 64 images (1,280 boxes), timed in total (round 2's);
- apply: `results.apply_ranking`, the one transaction that switches the served ranking, timed, while an
  annotator thread leases k=10 without pause (service call + commit, answered right after);
- drop: the superseded round's scores deleted in batches (`worker.stages.rank.drop_superseded_scores`),
  timed, the annotator still leasing;
- lease p50/p99 before, during the switch and during the drop, and which ranking each lease was served
  from (round 1's scores lie in [2, 3), round 2's in [4, 5): a lease must come from one, never a mix);
- the database's size with both rounds' scores staged.
Synthetic predictions and scores: this measures the service and the database, not the detector.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from rich.console import Console
from sqlalchemy import func, select, text, update

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import Box, BoxScore, Image, utcnow  # noqa: E402
from app.projects.service import get_project  # noqa: E402
from app.queries.service import lease  # noqa: E402
from app.rounds import results  # noqa: E402
from app.rounds import service as rounds  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.lease_bench import PER_IMAGE, PG_URL, fill, fresh_database, pct  # noqa: E402
from worker.stages.rank import drop_superseded_scores  # noqa: E402

console = Console()
SHARD_BOXES = 64 * PER_IMAGE  # one scoring task's boxes (BOXAL_SHARD_IMAGES = 64)


class Leaser(threading.Thread):
    """Leases k=10 in a loop, answering each lease, and records (start, seconds, model versions seen)."""

    def __init__(self, db: Database, pid: int, settings: Settings) -> None:
        super().__init__(daemon=True)
        self.db, self.pid, self.settings = db, pid, settings
        self.stop = threading.Event()
        self.samples: list[tuple[float, float, frozenset[int]]] = []
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.lease_once()
            except Exception as exc:  # a refused lease (503 busy) is a result, not the end of the run
                self.errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

    def lease_once(self) -> None:
        start = time.perf_counter()
        with self.db.transaction() as session:
            queries = lease(
                session,
                get_project(session, self.pid),
                k=10,
                annotator="bench",
                unit="box",
                now=utcnow(),
                settings=self.settings,
            )
            ids = [q.box_id for q in queries]
        rankings = frozenset(int((q.informativeness or 0) // 2) for q in queries)  # 1: round 1, 2: round 2
        self.samples.append((start, time.perf_counter() - start, rankings))
        with self.db.transaction() as session:
            session.execute(update(Box).where(Box.id.in_(ids)).values(status="background"))

    def between(self, start: float, end: float) -> list[tuple[float, float, frozenset[int]]]:
        return [s for s in self.samples if start <= s[0] < end]


def size_of(db: Database, url: str) -> str:
    if db.dialect == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    else:
        with db.engine.connect() as conn:
            size = conn.scalar(text("SELECT pg_database_size(current_database())"))
    return f"{size / 2**30:.2f} GiB"


def stage(db: Database, round_id: int, box_ids: list[int], offset: float) -> float:
    """Write every box's score for the round, shard by shard, as the scoring workers do; seconds taken."""
    rng = random.Random(round_id)
    started = time.perf_counter()
    with console.status(f"staging {len(box_ids):,} scores in shards of {SHARD_BOXES}") as status:
        for i, start in enumerate(range(0, len(box_ids), SHARD_BOXES)):
            with db.transaction() as session:
                shard = box_ids[start : start + SHARD_BOXES]
                results.record_scores(session, round_id, {b: offset + rng.random() for b in shard})
            if i % 100 == 0:
                status.update(f"staging scores: {start:,} of {len(box_ids):,}")
    return time.perf_counter() - started


def next_round(db: Database, pid: int, model: str) -> int:
    with db.transaction() as session:
        round_, _ = rounds.start_next_round(session, get_project(session, pid))
        results.training_finished(session, round_.id, model)
        return round_.id


def measure(kind: str, boxes: int, workdir: Path, pg_url: str) -> dict[str, object]:
    url, drop = fresh_database(kind, workdir, pg_url)
    db = Database(url)
    try:
        upgrade(db.engine)
        settings = Settings(data_dir=workdir / "data", database_url=url, _env_file=None)
        started = time.perf_counter()
        pid = fill(db, boxes, settings)
        console.print(f"[bold]{kind}[/]: {boxes:,} boxes filled in {time.perf_counter() - started:.0f} s")
        with db.transaction() as session:
            first = session.scalars(select(Image).where(Image.project_id == pid).limit(1)).one()
            first.fully_labeled = True  # a labeled image, so that a round can start
        with db.engine.connect() as conn:
            box_ids = [
                r[0] for r in conn.execute(select(Box.id).where(Box.project_id == pid).order_by(Box.id))
            ]
        round1 = next_round(db, pid, "bench-1")
        stage(db, round1, box_ids, offset=2.0)
        with db.transaction() as session:
            results.apply_ranking(session, round1)
        round2 = next_round(db, pid, "bench-2")
        stage_s = stage(db, round2, box_ids, offset=4.0)
        size = size_of(db, url)
        worker = SimpleNamespace(db=db)

        leaser = Leaser(db, pid, settings)
        leaser.start()
        time.sleep(5)  # a baseline of leases against round 1's ranking
        apply_start = time.perf_counter()
        with db.transaction() as session:
            results.apply_ranking(session, round2)
        apply_end = time.perf_counter()
        drop_superseded_scores(worker, pid, 2)  # type: ignore[arg-type]
        drop_end = time.perf_counter()
        time.sleep(3)
        leaser.stop.set()
        leaser.join()
        with db.engine.connect() as conn:
            left = conn.scalar(select(func.count()).select_from(BoxScore).where(BoxScore.round_id == round1))
        assert left == 0, f"{left} scores of round 1 were not dropped"
        before = [s[1] for s in leaser.between(0, apply_start)]
        during = [s[1] for s in leaser.between(apply_start, apply_end)]
        dropping = [s[1] for s in leaser.between(apply_end, drop_end)]
        mixed = [s for s in leaser.samples if len(s[2]) > 1]
        served = [s[2] for s in leaser.samples]
        return {
            "db": kind,
            "boxes": boxes,
            "stage_s": stage_s,
            "apply_s": apply_end - apply_start,
            "drop_s": drop_end - apply_end,
            "size": size,
            "before": (pct(before, 0.5), pct(before, 0.99), len(before)),
            "during": (pct(during, 0.5), pct(during, 0.99), len(during)) if during else None,
            "dropping": (pct(dropping, 0.5), pct(dropping, 0.99), len(dropping)) if dropping else None,
            "mixed": len(mixed),
            "empty": sum(1 for s in served if not s),
            "errors": leaser.errors,
        }
    finally:
        db.dispose()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--boxes", type=int, default=2_000_000)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    parser.add_argument(
        "--pg-url",
        default=PG_URL,
    )
    args = parser.parse_args()
    if args.smoke:
        args.boxes = 20_000
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(kind, args.boxes, Path(tmp), args.pg_url) for kind in args.db]
    print(
        "| database | boxes | stage scores (s) | apply ranking (s) | drop previous (s) | size "
        "| lease p50 / p99 before (ms) | during apply (ms) | during drop (ms) | leases during apply / drop "
        "| mixed / empty / refused leases |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def cell(p: tuple[float, float, int] | None) -> str:
        return f"{p[0]:.1f} / {p[1]:.1f}" if p else "-"

    for r in rows:
        b, d, x = r["before"], r["during"], r["dropping"]
        print(
            f"| {r['db']} | {r['boxes']:,} | {r['stage_s']:.1f} | {r['apply_s']:.2f} | {r['drop_s']:.1f} "
            f"| {r['size']} | {cell(b)} | {cell(d)} | {cell(x)} | {d[2] if d else 0} / {x[2] if x else 0} "
            f"| {r['mixed']} / {r['empty']} / {len(r['errors'])} |"
        )
        for error in sorted(set(r["errors"]))[:5]:
            console.print(f"{r['db']}: refused lease: {error}")


if __name__ == "__main__":
    main()
