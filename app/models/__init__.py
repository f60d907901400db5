"""Every ORM model, imported here so that Alembic's autogenerate and metadata see all tables."""

from app.models.base import Base, utcnow
from app.models.box import Box
from app.models.image import Image
from app.models.job import Job
from app.models.label_event import LabelEvent
from app.models.label_studio import LabelStudioLink
from app.models.project import Project
from app.models.query import Query
from app.models.round import Round
from app.models.scores import BoxScore, ImageScore, Shard
from app.models.token import Token

__all__ = [
    "Base",
    "Box",
    "BoxScore",
    "Image",
    "ImageScore",
    "Job",
    "LabelEvent",
    "LabelStudioLink",
    "Project",
    "Query",
    "Round",
    "Shard",
    "Token",
    "utcnow",
]
