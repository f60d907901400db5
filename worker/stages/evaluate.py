"""Stage 4: mAP of the round's model on the project's test split (pycocotools), and the job is done."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.jobs import service as jobs
from app.models import Round
from app.rounds import results
from app.rounds.class_counts import class_counts
from app.rounds.training_set import TargetBox, TrainingImage
from worker.context import WorkerContext
from worker.engine.evaluate import evaluate
from worker.stages.job import RoundRef, Skip, load, running


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
        unevaluated = results.test_images_without_truth(session, ref.project_id)
    if truth:
        metrics: dict[str, Any] = evaluate(ctx.detector(ref.model_version), truth)
    else:
        metrics = {
            "map": None,
            "map50": None,
            "note": "no mAP: the project has no test images with ground truth; register test images "
            '(split "test") and import their annotations to follow the model round by round',
        }
    if truth and unevaluated:
        metrics["note"] = f"{unevaluated} test images have no ground truth imported and are not evaluated"
    metrics["per_class"] = [
        {
            **count,
            "ap": (metrics.get("map_per_class") or [None] * len(counts))[k],
            "ap50": (metrics.get("map50_per_class") or [None] * len(counts))[k],
        }
        for k, count in enumerate(counts)
    ]
    with ctx.db.transaction() as session:
        warning = _fell(session, ref, metrics.get("map50"))
        if warning:
            metrics["warning"] = warning
        results.record_evaluation(session, ref.round_id, metrics)
        jobs.job_succeeded(session, job_id)
    return metrics


MAP_DROP = 0.2  # a round whose test mAP@0.5 falls by more than this share of the previous round's says so


def _fell(session: Session, ref: RoundRef, now: float | None) -> str | None:
    """Why a round's mAP@0.5 fell more than MAP_DROP below the previous round's, with what it trained on
    (its job's training report), or None."""
    previous = session.scalar(
        select(Round.metrics).where(Round.project_id == ref.project_id, Round.number == ref.number - 1)
    )
    before = (previous or {}).get("map50")
    if now is None or not before or (before - now) / before <= MAP_DROP:
        return None
    trained = jobs.get_job(session, ref.job_id).progress or {}
    settings = ref.settings
    floor = {
        "frozen": ("the first model's predictions", settings.t_d),
        "refreshed": ("the current model's predictions", settings.refresh_confidence),
        "pseudo": ("pseudo-labels", settings.pseudo_label_score),
    }[settings.noisy_targets]
    images, noisy = int(trained.get("images") or 0), int(trained.get("noisy_boxes") or 0)
    per_image = f" ({noisy / images:.1f} per image)" if images else ""
    return (
        f"mAP@0.5 fell from {before:.3f} to {now:.3f} ({(now - before) / before:+.0%}) after training on "
        f"{images} images with {trained.get('labeled_boxes', '?')} labeled boxes and {noisy} noisy targets"
        f"{per_image}, {floor[0]} from score {floor[1]:g} (noisy_targets {settings.noisy_targets}). Noisy "
        "targets that are not objects teach the model to find them: the default loop keeps only "
        "pseudo-labels from 0.9; with the paper's, raise t_d or lower lambda_d"
    )
