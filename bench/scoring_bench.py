"""Scoring a pool through the worker tasks against the engine's raw inference on the same images.

    python bench/scoring_bench.py --images 1000 --mode embedded     # SQLite + filesystem broker
    python bench/scoring_bench.py --images 1000 --mode production   # PostgreSQL + Redis

Raw: worker.engine.inference.predict over the pool, in this process. Tasks: a `boxal worker` process
scores the same pool for a round (sharded tasks over the broker, predictions and scores written to
the database, ranking applied); timed from sending the round's task until the round is open. The
model is the lite Faster R-CNN after one short epoch, so that it predicts a realistic number of boxes.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import torch
from rich.console import Console
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.db import Database  # noqa: E402
from app.enqueue import TASK_RUN_ROUND, Enqueuer  # noqa: E402
from app.images.service import NewImage, register  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import Box, Job, Round  # noqa: E402
from app.projects.schemas import ProjectCreate, ProjectSettings  # noqa: E402
from app.projects.service import create_project, get_project  # noqa: E402
from app.rounds import results  # noqa: E402
from app.rounds import service as rounds  # noqa: E402
from app.settings import Settings  # noqa: E402
from formats.coco import load_coco  # noqa: E402
from oracle.digits import CLASSES, generate  # noqa: E402
from worker.artifacts import Artifacts  # noqa: E402
from worker.engine.config import TrainConfig  # noqa: E402
from worker.engine.data import coco_items  # noqa: E402
from worker.engine.detector import build_detector  # noqa: E402
from worker.engine.inference import predict  # noqa: E402
from worker.engine.presets import get_preset  # noqa: E402
from worker.engine.train import train  # noqa: E402

console = Console()
T_D = 0.05


def database(mode: str, tmp: Path, pg_url: str) -> tuple[str, callable]:
    if mode == "embedded":
        return f"sqlite:///{tmp / 'boxal.db'}", lambda: None
    admin_url = make_url(pg_url)
    name = f"boxal_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return admin_url.set(database=name).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--mode", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--scenes", type=Path, default=Path(tempfile.gettempdir()) / "boxal-bench-scenes")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get(
            "BOXAL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BOXAL_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: that it runs, in seconds")
    args = parser.parse_args()
    if args.smoke:
        # one folder per process: two smoke runs at once (the published-command test) must not share it
        args.images, args.scenes = 8, args.scenes.with_name(f"{args.scenes.name}-smoke-{os.getpid()}")
        atexit.register(shutil.rmtree, args.scenes, True)  # and it goes when the run does
    torch.set_num_threads(2)
    with console.status(f"generating {args.images} digit scenes"):
        scenes = generate(args.scenes, train_images=args.images, test_images=1, size=128, seed=3)
    _, items = coco_items(scenes.train_json, scenes.images)
    torch.manual_seed(0)
    detector = build_detector(
        get_preset("faster_rcnn_r18_fpn_lite"), 10, weights="none", min_size=128, max_size=128
    )
    with console.status("training the model for one short epoch"):
        train(detector, items[:40], TrainConfig(epochs=1, lr=0.01, batch_size=2, lr_steps=(), warmup_iters=5))
    paths = [item.path for item in items]
    start = time.perf_counter()
    with console.status("raw inference"):
        raw = predict(detector, paths, T_D)
    raw_s = time.perf_counter() - start
    boxes = sum(len(d.scores) for d in raw)
    console.print(
        f"raw inference: {len(paths)} images in {raw_s:.1f} s ({len(paths) / raw_s:.1f} images/s), "
        f"{boxes / len(paths):.1f} boxes/image"
    )

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        url, drop = database(args.mode, tmp, args.pg_url)
        env = {
            "BOXAL_DATA_DIR": str(tmp / "data"),
            "BOXAL_DATABASE_URL": url,
            "BOXAL_LOG_LEVEL": "warning",
            "BOXAL_IMAGE_ROOTS": str(scenes.root),
        }
        if args.mode == "production":
            env["BOXAL_BROKER_URL"] = args.redis_url
        settings = Settings(
            data_dir=tmp / "data", database_url=url, broker_url=env.get("BOXAL_BROKER_URL"), _env_file=None
        )
        db = Database(url)
        try:
            upgrade(db.engine)
            coco = load_coco(scenes.train_json)
            with db.transaction() as session:
                project = create_project(
                    session,
                    ProjectCreate(
                        name="bench",
                        classes=CLASSES,
                        settings=ProjectSettings(
                            model="faster_rcnn_r18_fpn_lite", min_size=128, max_size=128, t_d=T_D
                        ),
                    ),
                    settings,
                )
                register(
                    session,
                    project,
                    [
                        NewImage(scenes.images / im.file_name, "pool", str(im.id), im.width, im.height)
                        for im in coco.images
                    ],
                )
                # one labeled image, so that the round can start; then the round's model is ours
                from app.models import Image

                first = session.scalars(select(Image).where(Image.project_id == project.id).limit(1)).one()
                first.fully_labeled = True
                round_, job = rounds.start_next_round(session, get_project(session, project.id))
                model_version = f"bench-{uuid.uuid4().hex[:6]}"
                Artifacts(settings).save_model(
                    model_version,
                    {
                        "model": detector.model.state_dict(),
                        "preset": "faster_rcnn_r18_fpn_lite",
                        "num_classes": 10,
                        "min_size": 128,
                        "max_size": 128,
                    },
                )
                results.training_finished(session, round_.id, model_version)
                round_id, job_id = round_.id, job.id
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker", "--name", "bench@%h"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(8)  # the worker imports torch and connects
                start = time.perf_counter()
                Enqueuer(settings).send(TASK_RUN_ROUND, [job_id])
                while True:
                    with db.transaction(write=False) as session:
                        state = session.get(Round, round_id).state
                        job_state = session.get(Job, job_id)
                    if state == "open":
                        break
                    if job_state.state == "failed":
                        raise RuntimeError(job_state.error)
                    time.sleep(0.1)
                task_s = time.perf_counter() - start
            finally:
                worker.terminate()
                worker.wait(timeout=30)
            with db.transaction(write=False) as session:
                stored = len(session.scalars(select(Box.id).where(Box.source == "predicted")).all())
            shards = -(-args.images // settings.shard_images)
        finally:
            db.dispose()
            drop()
    console.print(
        f"through the tasks ({args.mode}): {task_s:.1f} s ({len(paths) / task_s:.1f} images/s), "
        f"{stored} boxes stored, {shards} shards"
    )
    print("| mode | images | raw inference | through the tasks | throughput ratio | boxes/image |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(
        f"| {args.mode} | {len(paths)} | {raw_s:.1f} s ({len(paths) / raw_s:.1f}/s) | "
        f"{task_s:.1f} s ({len(paths) / task_s:.1f}/s) | {raw_s / task_s:.1%} | {boxes / len(paths):.1f} |"
    )


if __name__ == "__main__":
    main()
