"""Stage 4: mAP of the round's model on the project's test split (pycocotools), and the job is done."""

from __future__ import annotations

from typing import Any

from app.jobs import service as jobs
from app.rounds import results
from app.rounds.class_counts import class_counts
from app.rounds.training_set import TargetBox, TrainingImage
from worker.context import WorkerContext
from worker.engine.evaluate import evaluate
from worker.stages.job import Skip, load, running


def evaluate_round(ctx: WorkerContext, job_id: str) -> dict[str, Any]:
    ref = load(ctx, job_id)
    if ref.model_version is None or ref.state not in ("open", "closed"):
        raise Skip(f"round {ref.number} is {ref.state}, not ready for evaluation")
    running(ctx, job_id, "evaluating")
    with ctx.db.transaction(write=False) as session:
        known = len(ref.classes)  # a class added since the round started is not its model's to find
        truth = [
            TrainingImage(
                image.path,
                [TargetBox(b.bbox, b.label, box_id=b.id) for b in boxes if b.label < known],
                image_id=image.id,
                width=image.width,
                height=image.height,
                complete=True,
            )
            for image, boxes in results.evaluation_set(session, ref.project_id)
        ]
        counts = class_counts(
            session, ref.project_id, ref.snapshot_event_id, ref.classes, ref.settings.training_images
        )
    if truth:
        metrics: dict[str, Any] = evaluate(ctx.detector(ref.model_version), truth)
    else:
        metrics = {"map": None, "map50": None, "note": "no test images with ground truth"}
    metrics["per_class"] = [
        {
            **count,
            "ap": (metrics.get("map_per_class") or [None] * len(counts))[k],
            "ap50": (metrics.get("map50_per_class") or [None] * len(counts))[k],
        }
        for k, count in enumerate(counts)
    ]
    with ctx.db.transaction() as session:
        results.record_evaluation(session, ref.round_id, metrics)
        jobs.job_succeeded(session, job_id)
    return metrics
