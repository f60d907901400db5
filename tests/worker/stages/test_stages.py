"""The round stages run in process (the functions the Celery tasks call), on SQLite and PostgreSQL:
pool policies, strategies at both units, and idempotence."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.jobs import service as jobs
from app.models import Box, BoxScore, Image, Round, Shard
from app.projects.service import get_project
from app.rounds import service as rounds
from oracle.digits import CLASSES, generate
from worker.context import WorkerContext
from worker.stages import evaluate, rank, route, score, train
from worker.stages.job import Skip, Stage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory):
    return generate(tmp_path_factory.mktemp("scenes"), train_images=10, test_images=3, size=96, seed=4)


@pytest.fixture
def ctx(settings, database):
    context = WorkerContext(settings.model_copy(update={"shard_images": 3}))
    context.__dict__["db"] = database
    return context


def _project(client, scenes, **settings) -> int:
    from tests.worker.loop import digit_project

    pid, _ = digit_project(client, scenes, pool=10, initial=3, test=3, **settings)
    return pid


def _run_round(ctx: WorkerContext, job_id: str) -> None:
    """What the tasks do, in order, in this process (None: the job's router)."""
    queue: list[tuple[Stage | None, list]] = [(None, [job_id])]
    while queue:
        stage, args = queue.pop(0)
        if stage is None:
            queue += route.route(ctx, args[0])
        elif stage is Stage.TRAIN:
            train.train_round(ctx, args[0])
            queue.append((None, args))
        elif stage is Stage.SCORE:
            if score.score_shard(ctx, *args):
                queue.append((Stage.RANK, [args[0]]))
        elif stage is Stage.RANK:
            rank.rank_round(ctx, args[0])
            queue.append((Stage.EVALUATE, args))
        elif stage is Stage.EVALUATE:
            evaluate.evaluate_round(ctx, args[0])


def _start(ctx: WorkerContext, pid: int) -> str:
    with ctx.db.transaction() as session:
        _, job = rounds.start_next_round(session, get_project(session, pid))
        return job.id


def _answer_top(client, pid: int, k: int) -> list[dict]:
    queries = client.post(f"/v1/projects/{pid}/queries", json={"k": k, "annotator": "t"}).json()["queries"]
    labels = [
        {
            "query_id": q["query_id"],
            "action": "adjust" if i % 2 == 0 else "background",
            **({"bbox": q["bbox"], "label": q["label"]} if i % 2 == 0 else {}),
        }
        for i, q in enumerate(queries)
    ]
    client.post(f"/v1/projects/{pid}/labels", json={"labels": labels}).raise_for_status()
    return queries


def test_fixed_pool_is_predicted_once_and_stages_are_idempotent(client, ctx, scenes) -> None:
    pid = _project(client, scenes, round_size=1000)
    job = _start(ctx, pid)
    _run_round(ctx, job)
    with ctx.db.transaction(write=False) as session:
        boxes = session.scalar(select(func.count()).select_from(Box).where(Box.source == "predicted"))
        round1 = session.scalars(select(Round).where(Round.number == 1)).one()
    assert boxes > 0 and round1.state == "open"
    per_class = round1.metrics["per_class"]  # AP per class from pycocotools, and the boxes behind it
    assert [c["class"] for c in per_class] == CLASSES
    assert sum(c["queued"] for c in per_class) == boxes  # every prediction waits in the queue
    assert all(c["ap50"] is None or 0 <= c["ap50"] <= 1 for c in per_class)
    # the model version stays; the round's resumable checkpoint (weights and optimizer state) does not
    assert ctx.artifacts.model(round1.model_version).is_file()
    assert list((ctx.artifacts.root / "rounds").rglob("*.pt")) == []
    # every stage again: nothing changes, nothing is written twice
    for index in range(4):
        with pytest.raises(Skip):
            score.score_shard(ctx, job, index, 4)
    with pytest.raises(Skip):
        rank.rank_round(ctx, job)
    with pytest.raises(Skip):
        train.train_round(ctx, job)
    assert route.route(ctx, job) == []
    _answer_top(client, pid, 4)
    job2 = _start(ctx, pid)
    _run_round(ctx, job2)
    with ctx.db.transaction(write=False) as session:
        again = session.scalar(select(func.count()).select_from(Box).where(Box.source == "predicted"))
        unlabeled = set(session.scalars(select(Box.id).where(Box.status == "unlabeled")))
        versions = set(session.scalars(select(Box.model_version).where(Box.status == "unlabeled")))
        round2 = session.scalars(select(Round).where(Round.number == 2)).one()
        staged = session.execute(select(BoxScore.round_id, BoxScore.box_id)).all()
    assert again == boxes  # fixed: U_B comes from the first model; only its scores change
    assert versions == {round1.model_version}  # each box names the model that predicted it
    assert {b for r, b in staged if r == round2.id} == unlabeled  # round 2's scores rank them all
    assert {r for r, _ in staged} == {round2.id}  # and round 1's were dropped once round 2 served


def test_refresh_repredicts_and_keeps_answers(client, ctx, scenes) -> None:
    pid = _project(client, scenes, round_size=1000, pool_policy="refresh")
    _run_round(ctx, _start(ctx, pid))
    answered = _answer_top(client, pid, 4)
    _run_round(ctx, _start(ctx, pid))
    with ctx.db.transaction(write=False) as session:
        kept = {
            b.id: b for b in session.scalars(select(Box).where(Box.id.in_([q["box_id"] for q in answered])))
        }
        unlabeled = list(
            session.scalars(select(Box).where(Box.status == "unlabeled", Box.source == "predicted"))
        )
        images = set(
            session.scalars(select(Image.predicted_round).where(Image.split == "pool", ~Image.fully_labeled))
        )
    assert len(kept) == 4 and {b.status for b in kept.values()} == {"labeled", "background"}
    assert {b.round_predicted for b in unlabeled} == {2} and images == {2}
    from formats.geometry import iou

    for box in unlabeled:  # no new prediction sits on an answered box
        assert all(iou(box.bbox, a.bbox) < 0.5 for a in kept.values() if a.image_id == box.image_id)


@pytest.mark.parametrize("unit", ["box", "image"])
def test_coreset_ranks_by_distance_at_both_units(client, ctx, scenes, unit: str) -> None:
    pid = _project(client, scenes, strategy="coreset", unit=unit, round_size=3)
    _run_round(ctx, _start(ctx, pid))
    queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 5, "annotator": "t"}).json()["queries"]
    scores = [q["informativeness"] for q in queries]
    assert queries and all(s is not None for s in scores) and scores == sorted(scores, reverse=True)
    assert {q["unit"] for q in queries} == {unit}
    # the round's K=3 greedy picks come first, at strictly decreasing distances, above all the rest
    # (the rest may tie: detections of several classes from one proposal share its FC2 feature)
    assert scores[0] > scores[1] > scores[2] > scores[3]


@pytest.mark.parametrize("strategy", ["random", "least_confidence", "entropy", "margin"])
def test_image_unit_reduces_box_scores(client, ctx, scenes, strategy: str) -> None:
    pid = _project(client, scenes, strategy=strategy, unit="image", reduction="max")
    _run_round(ctx, _start(ctx, pid))
    queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 10, "annotator": "t"}).json()["queries"]
    assert len(queries) == 7 and all(q["unit"] == "image" for q in queries)  # 10 pool images, 3 labeled
    scores = [q["informativeness"] for q in queries]
    assert scores == sorted(scores, reverse=True) and max(scores) > 0
    with ctx.db.transaction(write=False) as session:
        assert session.scalar(select(func.count()).select_from(Shard).where(Shard.done)) == 4


def test_settings_reject_box_coreset_on_retinanet(client) -> None:
    response = client.post(
        "/v1/projects",
        json={
            "name": "r",
            "classes": CLASSES,
            "settings": {"model": "retinanet_r18_fpn_lite", "strategy": "coreset", "unit": "box"},
        },
    )
    assert response.status_code == 422 and "RetinaNet" in response.json()["detail"]


def test_refreshed_noisy_targets_come_from_the_current_model(client, ctx, scenes) -> None:
    """Round 2 trains with noisy targets predicted by round 1's model, the literal loss reading, and the
    old training-image rule: each setting's code path runs a whole round."""
    pid = _project(
        client,
        scenes,
        round_size=1000,
        noisy_targets="refreshed",
        refresh_confidence=0.2,
        loss_reading="group_means",
        training_images="labeled",
    )
    _run_round(ctx, _start(ctx, pid))
    _answer_top(client, pid, 4)
    job = _start(ctx, pid)
    _run_round(ctx, job)
    with ctx.db.transaction(write=False) as session:
        rounds_ = {r.number: r for r in session.scalars(select(Round).where(Round.project_id == pid))}
        progress = jobs.get_job(session, job).progress
    assert rounds_[2].state == "open" and rounds_[2].metrics is not None
    assert progress["noisy_from"] == rounds_[1].model_version
    assert {"noisy_boxes", "ignore_regions", "negatives"} <= set(progress)


def test_a_weights_file_that_does_not_fit_fails_training_naming_the_tensor(
    client, ctx, scenes, tmp_path
) -> None:
    import torch

    from worker.engine.detector import build_detector
    from worker.engine.presets import get_preset
    from worker.engine.weights import WeightsMismatch

    other = build_detector(get_preset("retinanet_r18_fpn_lite"), len(CLASSES), weights="none")
    path = tmp_path / "retinanet.pt"
    torch.save(other.model.state_dict(), path)
    pid = _project(client, scenes, round_size=1000, weights=f"file://{path}")
    job = _start(ctx, pid)
    with pytest.raises(WeightsMismatch, match=r"tensor '[\w.]+'"):
        train.train_round(ctx, job)


def test_a_class_added_while_a_round_trains_joins_the_next_round(client, ctx, scenes) -> None:
    """The round keeps the classes it started with: its scoring and evaluation do not see the new one
    (they failed with an IndexError before), and the next round trains on all of them."""
    pid = _project(client, scenes, name="grows")
    job_id = _start(ctx, pid)
    train.train_round(ctx, job_id)  # the model of the project's classes as they were
    added = client.patch(f"/v1/projects/{pid}", json={"add_classes": ["zz"]})
    assert added.status_code == 200 and added.json()["classes"] == [*CLASSES, "zz"]
    _run_round(ctx, job_id)  # scoring, ranking, evaluation
    first = client.get(f"/v1/projects/{pid}/rounds").json()["items"][1]
    assert (first["state"], first["error"], first["classes"]) == ("open", None, CLASSES)
    assert first["metrics"]["map50"] is not None
    assert [c["class"] for c in first["metrics"]["per_class"]] == CLASSES
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "succeeded"
    curve = client.get(f"/v1/projects/{pid}/curve").json()["points"]
    assert len(curve) == 1 and len(curve[0]["per_class"]) == len(CLASSES)

    second_job = _start(ctx, pid)
    _run_round(ctx, second_job)
    second = client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]
    assert second["state"] == "open" and second["classes"] == [*CLASSES, "zz"]
    assert [c["class"] for c in second["metrics"]["per_class"]] == [*CLASSES, "zz"]
    assert ctx.detector(second["model_version"]).num_classes == len(CLASSES) + 1


def test_a_failed_evaluation_is_visible_on_its_open_round(client, ctx, scenes, database) -> None:
    pid = _project(client, scenes, name="evalfails")
    job_id = _start(ctx, pid)
    _run_round(ctx, job_id)
    with database.transaction() as session:
        jobs.job_failed(session, job_id, "evaluating: something broke")
    last = client.get(f"/v1/projects/{pid}/rounds").json()["items"][-1]
    assert last["state"] == "open" and last["error"] == "evaluating: something broke"  # it still serves


def test_a_box_below_the_query_band_is_never_served(client, ctx, scenes) -> None:
    """query_min_score: only the current model's confident predictions are box queries; the rest stay in
    the pool unqueried (and image queries, once box queries run out, still see every box)."""
    pid = _project(client, scenes, name="band", round_size=1000, pool_policy="refresh")
    _run_round(ctx, _start(ctx, pid))
    with ctx.db.transaction(write=False) as session:
        scores = sorted(
            session.scalars(select(Box.score).where(Box.status == "unlabeled", Box.source == "predicted"))
        )
    band = scores[len(scores) // 2]  # half the pool's predictions above the band, half below
    assert 0 < band < 1 and scores[0] < band
    patched = client.patch(f"/v1/projects/{pid}", json={"settings": {"query_min_score": band}})
    assert patched.status_code == 200
    _run_round(ctx, _start(ctx, pid))  # round 2 re-predicts the pool and ranks only the band
    served: list[dict] = []
    while batch := client.post(f"/v1/projects/{pid}/queries", json={"k": 100, "annotator": "b"}).json()[
        "queries"
    ]:
        served += batch
        if batch[-1]["unit"] == "image":
            break
    boxes = [q for q in served if q["unit"] == "box"]
    low = [(q["box_id"], q["score"], q["round"]) for q in boxes if q["score"] < band - 1e-6]
    assert boxes and not low, (band, low[:5], len(boxes))
    with ctx.db.transaction(write=False) as session:
        below = session.scalar(
            select(func.count()).where(
                Box.project_id == pid, Box.status == "unlabeled", Box.round_predicted == 2, Box.score < band
            )
        )
    assert below > 0  # they exist, and were never served


def test_a_query_band_above_the_pseudo_label_score_is_refused_naming_both(client) -> None:
    project = client.post(
        "/v1/projects",
        json={
            "name": "contradicts",
            "classes": ["a"],
            "settings": {"noisy_targets": "pseudo", "query_min_score": 0.95, "pseudo_label_score": 0.9},
        },
    )
    assert project.status_code == 422
    assert "query_min_score" in project.json()["detail"] and "pseudo_label_score" in project.json()["detail"]
    made = client.post("/v1/projects", json={"name": "fine", "classes": ["a"]}).json()
    before = client.get(f"/v1/projects/{made['id']}").json()
    patch = {"settings": {"noisy_targets": "pseudo", "query_min_score": 0.95}}
    assert client.patch(f"/v1/projects/{made['id']}", json=patch).status_code == 422
    assert client.get(f"/v1/projects/{made['id']}").json() == before
    d2 = client.post(
        "/v1/projects",
        json={
            "name": "d2",
            "classes": ["a"],
            "settings": {"backend": "detectron2", "unknown_background": "soft"},
        },
    )
    assert d2.status_code == 422 and "unknown_background" in d2.json()["detail"]


def test_consistency_ranks_the_pool_from_the_models_views(client, ctx, scenes) -> None:
    pid = _project(client, scenes, name="views", strategy="consistency", pool_policy="refresh")
    _run_round(ctx, _start(ctx, pid))
    queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 30, "annotator": "v"}).json()["queries"]
    scores = [q["informativeness"] for q in queries]
    assert queries and all(q["unit"] == "box" for q in queries)
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores) and scores[0] > 0
    refused = client.patch(f"/v1/projects/{pid}", json={"settings": {"unit": "image"}})
    assert refused.status_code == 422 and "consistency" in refused.json()["detail"]


def _low_score_predictions(client, pid: int, scenes) -> None:
    """Predictions at score 0.2 on pool images 3-9, one per object (what a weak first model sends)."""
    from formats.coco import load_coco

    data = load_coco(scenes.train_json)
    images = data.images[3:10]
    ids = {im.id for im in images}
    coco = {
        "images": [
            {"id": f"pool-{im.id}", "file_name": im.file_name, "width": im.width, "height": im.height}
            for im in images
        ],
        "categories": [{"id": k, "name": v} for k, v in data.categories.items()],
        "annotations": [
            {"id": i, "image_id": f"pool-{a.image_id}", "category_id": a.category_id, "score": 0.2,
             "bbox": [a.bbox[0], a.bbox[1], a.bbox[2] - a.bbox[0], a.bbox[3] - a.bbox[1]]}
            for i, a in enumerate(data.annotations) if a.image_id in ids
        ],
    }  # fmt: skip
    body = {"format": "coco", "kind": "predictions", "data": coco}
    client.post(f"/v1/projects/{pid}/imports", json=body).raise_for_status()


def _round_two_noisy_targets(client, ctx, scenes, monkeypatch, **settings) -> list:
    """Digit scenes with low-score pool predictions, one of them answered background (its image joins
    training partly labeled), round 1; the noisy targets round 2 trains on, as the training loop gets them."""
    pid = _project(client, scenes, round_size=1000, **settings)
    _low_score_predictions(client, pid, scenes)
    lease = {"k": 1, "annotator": "t", "unit": "box"}  # before any model: the imported boxes
    [query] = client.post(f"/v1/projects/{pid}/queries", json=lease).json()["queries"]
    answer = {"labels": [{"query_id": query["query_id"], "action": "background"}]}
    client.post(f"/v1/projects/{pid}/labels", json=answer).raise_for_status()
    _run_round(ctx, _start(ctx, pid))
    seen: list = []
    real = train.train

    def spy(detector, records, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(records)
        return real(detector, records, *args, **kwargs)

    monkeypatch.setattr(train, "train", spy)
    train.train_round(ctx, _start(ctx, pid))
    partial = [r for r in seen if not r.complete]
    assert partial, "the answered image trains, partly labeled"
    return [box for record in partial for box in record.noisy]


def test_the_default_loop_trains_no_prediction_under_the_pseudo_label_floor(
    client, ctx, scenes, monkeypatch
) -> None:
    """Defaults from evidence (issue 47): a new project's noisy targets on a partly labeled image are the
    current model's pseudo-labels from 0.9 only, never the low-score predictions the paper trains on."""
    from worker.engine.inference import predict

    noisy = _round_two_noisy_targets(client, ctx, scenes, monkeypatch, loop="boxal")
    with ctx.db.transaction(write=False) as session:
        version = session.scalar(select(Round.model_version).where(Round.number == 1))
        answered = select(Box.image_id).where(Box.status == "background")
        paths = list(session.scalars(select(Image.path).where(Image.id.in_(answered))))
    confident = predict(ctx.detector(version), paths, 0.9)
    assert len(noisy) == sum(len(c.scores) for c in confident) == 0  # this weak model makes no pseudo-label


def test_the_papers_loop_trains_the_low_score_predictions(client, ctx, scenes, monkeypatch) -> None:
    """The same with loop paper: the predictions at 0.2 are noisy targets (what the defaults avoid)."""
    noisy = _round_two_noisy_targets(client, ctx, scenes, monkeypatch, loop="paper")
    assert noisy and all(box.weight == 0.5 for box in noisy)


def test_a_round_whose_map_falls_says_so_with_what_it_trained_on(client, ctx, tmp_path) -> None:
    """The new user's round pair (issue 47): 0.813, then 0.222 after training on 2,361 noisy targets from
    score 0.05; the round, /curve and so the page carry the warning."""
    from app.jobs import service as job_service
    from app.models import Project
    from app.rounds import results
    from tests.factories import coco_for, create_project, import_coco, register_images
    from worker.stages.job import load

    pid = create_project(client, loop="paper", t_d=0.05)["id"]
    images = register_images(client, pid, tmp_path / "pool", 2)
    import_coco(client, pid, coco_for(images[:1], {"img00000": [([1, 1, 9, 9], "cat")]}, ["cat", "dog"]))
    with ctx.db.transaction() as session:
        project = session.get(Project, pid)
        first, _ = rounds.start_next_round(session, project)
        first.state, first.model_version, first.metrics = "open", "m1", {"map50": 0.813}
        project.serving_round = 1
        second, job = rounds.start_next_round(session, project, force=True)
        job_service.job_progress(session, job.id, images=88, labeled_boxes=412, noisy_boxes=2361)
        job_id, round_id = job.id, second.id
    steady = evaluate._fell
    with ctx.db.transaction() as session:
        assert steady(session, load(ctx, job_id), 0.7) is None  # a 14% dip is no warning
        warning = steady(session, load(ctx, job_id), 0.222)
        results.record_evaluation(session, round_id, {"map50": 0.222, "warning": warning})
    assert warning == (
        "mAP@0.5 fell from 0.813 to 0.222 (-73%) after training on 88 images with 412 labeled boxes and "
        "2361 noisy targets (26.8 per image), the first model's predictions from score 0.05 (noisy_targets "
        "frozen). Noisy targets that are not objects teach the model to find them: the default loop keeps "
        "only pseudo-labels from 0.9; with the paper's, raise t_d or lower lambda_d"
    )
    assert client.get(f"/v1/projects/{pid}/rounds").json()["items"][2]["warning"] == warning
    assert client.get(f"/v1/projects/{pid}/curve").json()["points"][-1]["warning"] == warning
