"""Keeping Label Studio on boxal's current model (with ``BOXAL_LABEL_STUDIO_URL`` and ``_TOKEN``): Label
Studio's uncertainty sampling orders tasks by the predictions of the model version its project names, so
once a round opens, the next call from Label Studio (an annotation, Start training, Retrieve predictions)
has it retrieve every task's predictions and moves its project to the new version, after boxal answered."""

from __future__ import annotations

import logging

import httpx
from sqlalchemy.orm import Session

from app.label_studio.predictions import model_version
from app.models import LabelStudioLink, Project
from app.settings import Settings

log = logging.getLogger(__name__)
TIMEOUT_S = 600.0  # Label Studio retrieves every task's predictions from boxal inside the call


def due(session: Session, settings: Settings, link: LabelStudioLink, project: Project) -> str | None:
    """The version to move Label Studio to, marked as moved (the caller commits), or None: no address or
    token configured, no model yet, or already there."""
    if not (settings.label_studio_url and settings.label_studio_token) or project.serving_round == 0:
        return None
    version = model_version(session, project)
    if link.synced_version == version:
        return None
    link.synced_version = version
    return version


def push(settings: Settings, database: object, link_id: int, ls_project: int, version: str) -> None:
    """Have Label Studio retrieve its tasks' predictions and move its project to ``version``; a failure is
    logged and the mark taken back, so that the next call tries again."""
    url = (settings.label_studio_url or "").rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=TIMEOUT_S) as client:
            client.headers["Authorization"] = _authorization(client, settings.label_studio_token or "")
            client.post(  # first: Label Studio takes a version only once predictions carry it
                "/api/dm/actions",
                params={"id": "retrieve_tasks_predictions", "project": ls_project},
                json={"selectedItems": {"all": True, "excluded": []}},
            ).raise_for_status()
            client.patch(f"/api/projects/{ls_project}", json={"model_version": version}).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("Label Studio project %s not moved to model version %s: %s", ls_project, version, exc)
        with database.transaction() as session:  # type: ignore[attr-defined]
            link = session.get(LabelStudioLink, link_id)
            if link is not None and link.synced_version == version:
                link.synced_version = None
        return
    log.info("Label Studio project %s moved to model version %s", ls_project, version)


def _authorization(client: httpx.Client, token: str) -> str:
    """A personal access token (a JWT) is exchanged for an access token; a legacy token is sent as is."""
    if token.count(".") == 2:
        response = client.post("/api/token/refresh", json={"refresh": token})
        response.raise_for_status()
        return f"Bearer {response.json()['access']}"
    return f"Token {token}"
