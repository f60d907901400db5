"""Label Studio's ML-backend protocol (HumanSignal/label-studio-ml-backend, ``label_studio_ml/api.py``)
under ``/label-studio``: connect boxal there as a project's ML backend.

Authentication: Label Studio's basic auth for ML backends (any user name; a boxal token as the password) or
a bearer token; webhooks carry the same header once it is added to the webhook Label Studio creates. Only
these endpoints are served here; nothing reaches the rest of the API through them.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasic, HTTPBasicCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.auth.service import Principal, authenticate
from app.deps import EnqueuerDep, WriteSession, get_settings_dep
from app.enqueue import TASK_RUN_ROUND, Enqueuer
from app.errors import Conflict, Forbidden, Invalid, Unauthorized, Unavailable
from app.jobs import service as jobs
from app.label_studio import answers, config, links, predictions, sync, tasks
from app.label_studio.schemas import PredictIn, SetupIn, TrainIn, WebhookIn
from app.models import LabelStudioLink, Project, Round, utcnow
from app.projects.service import latest_round
from app.rounds import service as rounds
from app.schemas import ERRORS
from app.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(prefix="/label-studio", tags=["label-studio"], responses=ERRORS)
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
ANNOTATED = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETED = ("ANNOTATION_DELETED", "ANNOTATIONS_DELETED")
KEPT = "boxal keeps every answer it recorded; deleting it in Label Studio changes nothing in boxal"


basic_auth = HTTPBasic(auto_error=False, description="any user name, a boxal token as the password")
bearer = HTTPBearer(auto_error=False, description="a boxal token")


def caller(
    request: Request,
    basic_credentials: Annotated[HTTPBasicCredentials | None, Depends(basic_auth)],
    bearer_credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    """The boxal token of a Label Studio call: the basic-auth password (or, with none, the user name)
    or a bearer token."""
    token = ""
    if bearer_credentials is not None:
        token = bearer_credentials.credentials.strip()
    elif basic_credentials is not None:
        token = basic_credentials.password or basic_credentials.username
    if not token:
        raise Unauthorized(
            "missing credentials: in Label Studio's ML backend settings, turn on basic auth with a boxal "
            "token as the password (any user name), or send Authorization: Bearer <token>"
        )
    with request.app.state.db.transaction(write=False) as session:
        principal = authenticate(session, token)
    if principal is None:
        raise Unauthorized("invalid or revoked token")
    return principal


Caller = Annotated[Principal, Depends(caller)]


@router.get("/health")
@router.get("/")
def health() -> dict[str, str]:
    """Label Studio's connection check."""
    return {"status": "UP", "model_class": "boxal"}


@router.post("/setup")
def setup(
    body: SetupIn,
    session: WriteSession,
    settings: SettingsDep,
    principal: Caller,
    request: Request,
    later: BackgroundTasks,
) -> dict[str, str]:
    """Connect a Label Studio project (its label config's RectangleLabels) to a boxal project; answers the
    model version Label Studio files predictions under."""
    label_config = config.parse(body.label_config)
    project = links.connect(session, body.project, label_config, body.extra_params, principal, settings)
    version = predictions.model_version(session, project)
    _keep_in_step(session, settings, request, later, links.find(session, body.project, principal)[0], project)
    session.commit()
    return {"model_version": version}


@router.post("/predict")
def predict(
    body: PredictIn, session: WriteSession, settings: SettingsDep, principal: Caller
) -> dict[str, Any]:
    """The current model's boxes on each task's image, boxal's box queries marked, and a task score
    ordering Label Studio's uncertainty sampling by boxal's ranking (tasks seen first are registered)."""
    link, project = links.find(session, body.project, principal)
    if body.label_config is not None:
        _same_control(config.parse(body.label_config, what="label_config"), link.from_name)
    images = tasks.task_images(session, project, link, body.tasks, settings)
    results = predictions.predict(
        session, project, _link_config(link, project), [images[task.id] for task in body.tasks]
    )
    session.commit()
    answer = {"results": results, "model_version": predictions.model_version(session, project)}
    note = predictions.unit_note(session, project)
    return {**answer, "unit_note": note} if note else answer


@router.post("/webhook")
def webhook(
    body: WebhookIn,
    session: WriteSession,
    enqueuer: EnqueuerDep,
    settings: SettingsDep,
    principal: Caller,
    request: Request,
    later: BackgroundTasks,
) -> dict[str, Any]:
    """Annotations become answers (``lead_time`` their duration; ``round_size`` of them start a round);
    START_TRAINING starts one; deletions are kept out (boxal never drops an answer); other actions pass."""
    if body.action in DELETED:
        return {"status": "kept", "detail": KEPT}
    if body.action not in (*ANNOTATED, "START_TRAINING"):
        return {"status": "ignored", "action": body.action}
    if body.project is None:
        raise Invalid(f"project: a {body.action} webhook names its project")
    link, project = links.find(session, body.project, principal)
    _keep_in_step(session, settings, request, later, link, project)
    if body.action == "START_TRAINING":
        session.commit()  # the step kept, even when the round cannot start
        return _train(session, project, enqueuer, principal)
    if body.annotation is None or body.task is None:
        raise Invalid(f"{body.action}: the webhook needs annotation and task (turn on 'send payload')")
    if body.annotation.was_cancelled:
        return {"status": "skipped", "detail": "the annotator skipped the task; nothing recorded"}
    image = tasks.task_images(session, project, link, [body.task], settings)[body.task.id]
    result = answers.record(session, project, link, image, body.annotation, utcnow())
    started = rounds.maybe_close_round(session, project)
    number = started[0].number if started else latest_round(session, project.id).number
    session.commit()
    if started:
        _send(session, enqueuer, started[0], started[1].id, after_answers=True)
    return {**result.model_dump(), "round": number, "round_started": started is not None}


@router.post("/train", status_code=status.HTTP_201_CREATED)
def train(body: TrainIn, session: WriteSession, enqueuer: EnqueuerDep, principal: Caller) -> dict[str, Any]:
    """The older training call (Label Studio without the START_TRAINING webhook): start the next round."""
    _, project = links.find(session, body.project, principal)
    return _train(session, project, enqueuer, principal)


def _keep_in_step(
    session: Session,
    settings: Settings,
    request: Request,
    later: BackgroundTasks,
    link: LabelStudioLink,
    project: Project,
) -> None:
    """Once boxal serves a new model, move Label Studio's project to it after answering (app/label_studio/
    sync.py; only with BOXAL_LABEL_STUDIO_URL and _TOKEN): marked now, committed with the caller's work."""
    version = sync.due(session, settings, link, project)
    if version is not None:
        later.add_task(sync.push, settings, request.app.state.db, link.id, link.ls_project, version)


def _train(session: Session, project: Project, enqueuer: Enqueuer, principal: Principal) -> dict[str, Any]:
    if not principal.is_admin:
        raise Forbidden("starting a round needs an admin token")
    current = latest_round(session, project.id)
    if current.state in ("training", "scoring"):
        return {"status": "already_training", "round": current.number, "job": current.job_id}
    round_, job = rounds.start_next_round(session, project)
    session.commit()
    _send(session, enqueuer, round_, job.id, after_answers=False)
    return {"status": "started", "round": round_.number, "job": job.id}


def _send(session: Session, enqueuer: Enqueuer, round_: Round, job_id: str, *, after_answers: bool) -> None:
    try:
        enqueuer.send(TASK_RUN_ROUND, [job_id])
    except Unavailable as exc:
        if after_answers:  # the answers are committed; the reaper or START_TRAINING sends the round again
            log.warning("round %s recorded but not enqueued: broker unavailable", round_.number)
            return
        jobs.job_failed(session, job_id, f"not started: {exc.detail}")
        session.commit()
        raise Unavailable(f"round {round_.number} could not be started: {exc.detail}; retry") from exc


def _link_config(link: LabelStudioLink, project: Project) -> config.LabelConfig:
    return config.LabelConfig(link.from_name, link.to_name, link.value, list(project.classes))


def _same_control(found: config.LabelConfig, from_name: str) -> None:
    if found.from_name != from_name:
        raise Conflict(
            f"label_config: its RectangleLabels is {found.from_name!r}, boxal was set up with {from_name!r}; "
            "Label Studio calls /setup again when the config changes"
        )
