"""What a lease can serve before the first round (the seed images) and, when it serves nothing, why."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.models import Image, Project
from app.projects.service import project_settings
from app.rounds.service import open_pool_images


def why_empty(session: Session, project: Project) -> str:
    """Why a lease found nothing to serve, in words an annotator can act on."""
    pool = session.scalar(select(func.count()).where(Image.project_id == project.id, Image.split == "pool"))
    if not pool:
        return "the project has no pool images yet: register some (POST .../images)"
    open_images = open_pool_images(session, project)
    if not open_images:
        return "every pool image is fully labeled: nothing is left to ask"
    if seeding(project):
        return f"the {project_settings(project).seed_images} seed images are all leased or labeled"
    return (
        f"every query of round {project.serving_round} is answered or leased to someone else "
        f"({open_images} pool images are not fully labeled); leases expire after "
        f"{project_settings(project).lease_ttl_s} s, and the next round brings new queries"
    )


def seeding(project: Project) -> bool:
    """Round 0 with seed_images: the initial labeled set is collected through random image queries."""
    return project.serving_round == 0 and project_settings(project).seed_images > 0


def seed_images_left(session: Session, project: Project, now: datetime) -> int:
    labeled = session.scalar(
        select(func.count()).where(Image.project_id == project.id, Image.split == "pool", Image.fully_labeled)
    )
    leased = session.scalar(
        select(func.count()).where(
            Image.project_id == project.id,
            Image.split == "pool",
            ~Image.fully_labeled,
            Image.lease_expires_at > now,
        )
    )
    return max(0, project_settings(project).seed_images - (labeled or 0) - (leased or 0))
