"""What a box arm trained on, against the ground truth: the images its answers pulled into training, their
objects, and how many of those were labeled, covered by a noisy target, or left unknown.

    python bench/noisy_targets.py experiments/aquarium-s0-bestbox-control

Reads a `boxal simulate` run's own embedded database (``<run>/server/boxal.db``) in its final state and the
run's data set through its preset (``--data`` where the run was given one). For each box arm (and each
``unit: auto`` arm, whichever units it served): the queries
it answered and the share answered background; the pool images in training (fully labeled ones: the
initial images, and any a fallback labeled whole; and images holding any answered box, background answers
included, as DESIGN.md's loop says), their ground-truth objects, how many an answer labeled, how many a
noisy target overlaps at IoU >= 0.5 with the same class, and how many neither (left unknown: trained as
background in the paper's loop, weighted by the model's background belief or left out under
``unknown_background`` soft or ignore); and of the noisy targets, how many match an object so (their
precision).

The noisy targets are what the arm's last round trained on. The paper's (``noisy_targets: frozen``) are
the stored first predictions left unanswered. Refreshed ones and pseudo-labels are recomputed exactly as
the worker made them for that round (worker/stages/train.py: the previous round's model predicting the
round's training images, cleaned by worker/engine/refresh.py; pseudo-labels only from
``pseudo_label_score``), from the model version the run kept: this loads the model and predicts, so it
takes a minute or two on a CPU.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.projects.settings import ProjectSettings  # noqa: E402
from formats.geometry import iou  # noqa: E402
from oracle.answers import GroundTruth  # noqa: E402
from oracle.presets import PRESETS  # noqa: E402

MATCH = 0.5
UNKNOWN = {"full": "background", "soft": "soft background", "ignore": "nothing (ignored)"}
Box = tuple[list[float], int]  # xyxy pixels, class index


def _boxes(db: sqlite3.Connection, pid: int, where: str) -> dict[str, list[Box]]:
    rows = db.execute(
        "SELECT i.external_id, b.x1, b.y1, b.x2, b.y2, b.label FROM boxes b "
        f"JOIN images i ON i.id = b.image_id WHERE b.project_id = ? AND i.split = 'pool' AND {where}",
        (pid,),
    )
    out: dict[str, list[Box]] = defaultdict(list)
    for external_id, x1, y1, x2, y2, label in rows:
        out[external_id].append(([x1, y1, x2, y2], label))
    return out


def _matched(box: Box, others: list[Box]) -> bool:
    return any(label == box[1] and iou(xyxy, box[0]) >= MATCH for xyxy, label in others)


def arm_row(
    db: sqlite3.Connection,
    pid: int,
    truth: dict[str, list[Box]],
    noisy: dict[str, list[Box]] | None = None,
) -> dict[str, int]:
    """The counts the module describes for project ``pid``; ``noisy``: the noisy targets per image where
    they are not the stored predictions left unanswered (refreshed targets, pseudo-labels)."""
    fully = {
        r[0]
        for r in db.execute(
            "SELECT external_id FROM images WHERE project_id = ? AND split = 'pool' AND fully_labeled", (pid,)
        )
    }
    answered = _boxes(db, pid, "b.source = 'predicted' AND b.status = 'labeled'")
    background = _boxes(db, pid, "b.source = 'predicted' AND b.status = 'background'")
    if noisy is None:
        noisy = _boxes(db, pid, "b.source = 'predicted' AND b.status = 'unlabeled'")
    touched = _boxes(db, pid, "b.source = 'predicted' AND b.status IN ('labeled', 'background', 'duplicate')")
    joined = sorted(set(touched) - fully)  # any answer, background too, brings its image in (DESIGN.md)
    objects = [(image, obj) for image in joined for obj in truth.get(image, [])]
    labeled = sum(_matched(obj, answered.get(image, [])) for image, obj in objects)
    covered = sum(
        not _matched(obj, answered.get(image, [])) and _matched(obj, noisy.get(image, []))
        for image, obj in objects
    )
    targets = [(image, box) for image in joined for box in noisy.get(image, [])]
    return {
        "queries answered": sum(len(boxes) for boxes in touched.values()),
        "answered background": sum(len(boxes) for boxes in background.values()),
        "fully labeled images": len(fully),
        "joined images": len(joined),
        "objects in joined": len(objects),
        "labeled by an answer": labeled,
        "covered by a noisy target": covered,
        "left unknown": len(objects) - labeled - covered,
        "noisy targets": len(targets),
        "noisy targets on an object": sum(_matched(box, truth.get(image, [])) for image, box in targets),
    }


def recomputed(run: Path, pid: int) -> tuple[dict[str, list[Box]], str]:
    """The refreshed noisy targets or pseudo-labels the arm's last trained round trained on, made again
    by the worker's own code from the model version that made them; and that version."""
    from sqlalchemy import select

    from app.models import Image, Round
    from app.rounds.training_set import training_set
    from app.settings import Settings
    from worker.context import WorkerContext
    from worker.stages import job, train

    ctx = WorkerContext(Settings(data_dir=run / "server"))
    with ctx.db.transaction(write=False) as session:
        last = session.scalars(
            select(Round)
            .where(Round.project_id == pid, Round.model_version.is_not(None), Round.number > 1)
            .order_by(Round.number.desc())
        ).first()
        if last is None or last.job_id is None:
            return {}, "no round of queries trained"
        job_id = last.job_id
        rows = session.execute(select(Image.id, Image.external_id).where(Image.project_id == pid))
        names: dict[object, str] = {image_id: name for image_id, name in rows}
    ref = job.load(ctx, job_id)
    with ctx.db.transaction(write=False) as session:
        records = training_set(
            session,
            pid,
            ref.snapshot_event_id,
            lambda_d=ref.settings.lambda_d,
            images=ref.settings.training_images,
        )
    if all(r.complete for r in records):
        return {}, "none: no partly labeled image in training"
    fresh, model = train._refreshed(ctx, ref, records)
    return {
        names[r.image_id]: [(list(b.bbox), b.label) for b in r.noisy] for r in fresh if not r.complete
    }, model


def _share(part: int, whole: int) -> str:
    return f"{part:,} ({part / whole:.0%})" if whole else f"{part:,}"


def _arm(project: str, experiment: dict) -> str:
    """The arm's name as reports give it (``box/new-soft``), from its project's name
    (``bccd-v3-<id>-s0-box-new-soft``, oracle/experiment.py), with its seed where the run has several;
    the project's own name where none matches."""
    names = [arm.get("label") or f"{arm['unit']}/{arm['strategy']}" for arm in experiment.get("arms", [])]
    for name in names:
        if found := re.search(rf"-s(\d+)-{re.escape(name.replace('/', '-'))}$", project):
            return name if len(experiment.get("seeds", [])) <= 1 else f"{name}, seed {found[1]}"
    return project


def _truth(run: Path, experiment: dict, data: Path | None) -> dict[str, list[Box]]:
    with tempfile.TemporaryDirectory() as tmp:
        # the preset that ran it: a preset's experiment name may differ from its own (bccd runs bccd-v2)
        preset = next(p for p in PRESETS.values() if p.experiment().name == experiment["name"])
        dataset = preset.dataset(data, Path(tmp))
        index = {name: i for i, name in enumerate(dataset.classes)}

        def box(gt: GroundTruth) -> Box:
            return list(gt.bbox), index[gt.label]

        return {im.external_id: [box(gt) for gt in im.truth] for im in dataset.pool}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a `boxal simulate` output directory")
    parser.add_argument("--data", type=Path, help="the data set, where the run was given --data")
    parser.add_argument(
        "--smoke", action="store_true", help="accepted for the docs' check; the run sets the size"
    )
    args = parser.parse_args()
    experiment = json.loads((args.run / "experiment.json").read_text())
    truth = _truth(args.run, experiment, args.data)
    db = sqlite3.connect(f"file:{args.run / 'server' / 'boxal.db'}?mode=ro", uri=True)
    projects = db.execute("SELECT id, name, settings FROM projects ORDER BY id").fetchall()
    rows: dict[str, dict[str, object]] = {}
    for pid, name, settings in projects:
        # validated as the worker reads them, so that a setting left at its default prints its default
        config = ProjectSettings.model_validate(json.loads(settings))
        if "-box-" not in name and config.unit != "auto":  # the box arms, and auto's (box queries or not)
            continue
        mode = config.noisy_targets
        noisy, source = None, "first predictions, frozen"
        if mode in ("refreshed", "pseudo"):
            noisy, model = recomputed(args.run, pid)
            score = config.pseudo_label_score if mode == "pseudo" else config.refresh_confidence
            source = f"{mode} >= {score} by {model}"
        counts = arm_row(db, pid, truth, noisy)
        rows[_arm(name, experiment)] = {
            "noisy targets from": source,
            "unknown trains as": UNKNOWN[config.unknown_background],
            **counts,
            "answered background": _share(counts["answered background"], counts["queries answered"]),
            "left unknown": _share(counts["left unknown"], counts["objects in joined"]),
            "noisy targets on an object": _share(
                counts["noisy targets on an object"], counts["noisy targets"]
            ),
        }
    db.close()
    if not rows:
        raise SystemExit(f"{args.run}: no box arm in this run's database")
    print(f"{args.run}: each box arm's training set at its last round (IoU >= {MATCH}, same class)")
    header = next(iter(rows.values()))
    print("| arm | " + " | ".join(header) + " |")
    print("| --- | --- | --- |" + " ---: |" * (len(header) - 2))
    for name, row in rows.items():
        print(
            f"| {name} | "
            + " | ".join(f"{v:,}" if isinstance(v, int) else str(v) for v in row.values())
            + " |"
        )


if __name__ == "__main__":
    main()
