"""What a box arm trained on, against the ground truth: the images its answers pulled into training, their
objects, and how many of those were labeled, covered by a noisy target, or left to train as background.

    python bench/noisy_targets.py experiments/aquarium-s0-bestbox-control

Reads a `boxal simulate` run's own embedded database (``<run>/server/boxal.db``) in its final state and the
run's data set through its preset (``--data`` where the run was given one). For each box arm: the pool
images in training (fully labeled ones: the initial images, and any a fallback labeled whole; and images
holding any answered box, background answers included, as DESIGN.md's loop says), their ground-truth
objects, how many an answer labeled, how many a noisy target (a predicted box left unanswered on a training
image, trained with weight lambda_d) overlaps at IoU >= 0.5 with the same class, and how many neither
(trained as background); and of the noisy targets, how many match an object so (their precision).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formats.geometry import iou  # noqa: E402
from oracle.answers import GroundTruth  # noqa: E402
from oracle.presets import PRESETS  # noqa: E402

MATCH = 0.5
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


def arm_row(db: sqlite3.Connection, pid: int, truth: dict[str, list[Box]]) -> dict[str, int]:
    fully = {
        r[0]
        for r in db.execute(
            "SELECT external_id FROM images WHERE project_id = ? AND split = 'pool' AND fully_labeled", (pid,)
        )
    }
    answered = _boxes(db, pid, "b.source = 'predicted' AND b.status = 'labeled'")
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
        "fully labeled images": len(fully),
        "joined images": len(joined),
        "objects in joined": len(objects),
        "labeled by an answer": labeled,
        "covered by a noisy target": covered,
        "trained as background": len(objects) - labeled - covered,
        "noisy targets": len(targets),
        "noisy targets on an object": sum(_matched(box, truth.get(image, [])) for image, box in targets),
    }


def _truth(run: Path, data: Path | None) -> dict[str, list[Box]]:
    experiment = json.loads((run / "experiment.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        dataset = PRESETS[experiment["name"]].dataset(data, Path(tmp))
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
    truth = _truth(args.run, args.data)
    db = sqlite3.connect(f"file:{args.run / 'server' / 'boxal.db'}?mode=ro", uri=True)
    projects = db.execute("SELECT id, name FROM projects ORDER BY id").fetchall()
    rows = {name: arm_row(db, pid, truth) for pid, name in projects if "-box-" in name}  # the box arms
    db.close()
    if not rows:
        raise SystemExit(f"{args.run}: no box arm in this run's database")
    print(f"{args.run}: final state of each box arm's training set (IoU >= {MATCH}, same class)")
    print("| arm | " + " | ".join(next(iter(rows.values()))) + " |")
    print("| --- |" + " ---: |" * len(next(iter(rows.values()))))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:,}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
