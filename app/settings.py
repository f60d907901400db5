"""The one settings object shared by the API, the worker and the CLI (environment prefix ``BOXAL_``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOXAL_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("boxal-data"), description="SQLite file, uploads, artifacts, broker queue")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the data dir")
    broker_url: str | None = Field(
        None, description="Celery broker; default: a filesystem queue in the data dir (no server)"
    )
    admin_token: str | None = Field(None, description="admin bearer token; generated on first start if unset")
    image_roots: Annotated[list[str | Path], NoDecode] = Field(
        default_factory=list,
        description="where image URIs and import paths may point: local directories (the data dir is "
        "always allowed) and URL prefixes (s3://bucket/prefix/, https://host/path/, gs://, az://); "
        "separated by commas (local directories also by colons)",
    )
    s3_endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint (MinIO, Ceph, ...); credentials from the usual AWS_* variables",
    )
    remote_timeout_s: float = Field(
        30.0, gt=0, description="how long a read from object storage or HTTP may take"
    )
    image_cache_bytes: int = Field(
        2 * 1024**3, ge=0, description="local read-through cache of remote images (in the data dir), at most"
    )
    label_studio_document_root: Path | None = Field(
        None,
        description="Label Studio's LOCAL_FILES_DOCUMENT_ROOT as this machine sees it: its tasks' "
        "/data/local-files/?d= images are read from there (an allowed image root)",
    )
    label_studio_media_root: Path | None = Field(
        None,
        description="Label Studio's media folder (<its data dir>/media) as this machine sees it: its tasks' "
        "uploaded /data/upload/ images are read from there (an allowed image root)",
    )
    label_studio_url: str | None = Field(
        None,
        description="Label Studio's address as boxal reaches it: with label_studio_token, boxal moves each "
        "linked Label Studio project to its new model version and retrieves its predictions itself",
    )
    label_studio_token: str | None = Field(
        None, description="a Label Studio API token (a personal access token or a legacy token) for that"
    )
    host: str = Field("127.0.0.1", description="address `boxal serve` binds (loopback unless told otherwise)")
    port: int = Field(8000, description="port `boxal serve` listens on")
    api_workers: int = Field(
        1, ge=1, le=64, description="API processes `boxal serve` runs (PostgreSQL deployments: one per core)"
    )

    max_body_bytes: int = Field(64 * 1024 * 1024, description="largest accepted request body")
    max_upload_bytes: int = Field(32 * 1024 * 1024, description="largest accepted image upload")
    max_k: int = Field(100, description="most queries one lease call may ask for")
    max_page_size: int = Field(1000, description="largest page a list endpoint returns")
    max_import_items: int = Field(2_000_000, description="most images plus annotations in one import")
    max_image_pixels: int = Field(100_000_000, description="Pillow's decompression-bomb limit")

    job_stale_s: float = Field(
        120.0,
        description="a running job whose heartbeat is older is re-run (at once, where its worker process on "
        "the same machine is gone)",
    )
    shard_images: int = Field(64, ge=1, description="pool images per scoring task (shards run in parallel)")
    train_time_limit_s: int = Field(24 * 3600, description="a round's training is stopped after this")
    task_time_limit_s: int = Field(2 * 3600, description="limit for scoring, ranking, evaluation tasks")
    worker_concurrency: int = Field(
        1, ge=1, description="tasks one worker process runs at once (threads of that one process)"
    )
    worker_restarts: int = Field(
        10,
        ge=0,
        description="`boxal serve`: how many times in a row its worker is restarted after it exits (backoff "
        "1 s doubling to 30 s; a worker up 60 s resets the count); 0: never",
    )
    train_processes: int = Field(
        1, ge=1, le=64, description="processes a worker trains a round on (DDP; one per GPU it is given)"
    )
    mixed_precision: bool = Field(
        True, description="train with float16 autocast on CUDA (no effect on CPUs); false trains in float32"
    )
    broker_timeout_s: float = Field(3.0, description="how long enqueueing waits for the broker")
    db_write_wait_s: float = Field(
        30.0,
        gt=0,
        description="SQLite: how long a write waits for the write lock before answering 503 (busy)",
    )
    health_timeout_s: float = Field(
        2.0, gt=0, description="/health reports a dependency unavailable when it takes longer to answer"
    )
    shutdown_grace_s: float = Field(
        10.0,
        ge=0,
        description="on SIGTERM, how long `boxal serve` lets requests in flight finish before it stops",
    )
    log_level: str = Field("info", description="debug, info, warning or error")
    parent_pid: int | None = Field(
        None,
        description="set by boxal for the processes it starts: the process stops when its parent is gone",
    )

    @field_validator("image_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            return [
                piece for part in parts for piece in ([part] if "://" in part else part.split(":")) if piece
            ]
        return value

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.resolved_data_dir / 'boxal.db'}"

    @property
    def is_embedded_broker(self) -> bool:
        return not self.broker_url or self.broker_url.startswith(("filesystem://", "boxalfs://"))

    @property
    def broker_dir(self) -> Path:
        return self.resolved_data_dir / "broker"

    @property
    def uploads_dir(self) -> Path:
        return self.resolved_data_dir / "images"

    @property
    def artifacts_dir(self) -> Path:
        return self.resolved_data_dir / "artifacts"

    @property
    def allowed_roots(self) -> list[Path]:
        """Local directories image paths may point into."""
        local = [
            Path(str(r).removeprefix("file://"))
            for r in self.image_roots
            if "://" not in str(r) or str(r).startswith("file://")
        ]
        label_studio = [r for r in (self.label_studio_document_root, self.label_studio_media_root) if r]
        return [self.resolved_data_dir, *(root.expanduser().resolve() for root in [*local, *label_studio])]

    @property
    def remote_roots(self) -> list[str]:
        """URL prefixes remote image URIs may start with, each ending in '/' (a bucket is a whole prefix)."""
        remote = [str(r) for r in self.image_roots if "://" in str(r) and not str(r).startswith("file://")]
        return [r if r.endswith("/") else r + "/" for r in remote]

    @property
    def image_cache_dir(self) -> Path:
        return self.resolved_data_dir / "cache" / "images"


@lru_cache
def get_settings() -> Settings:
    return Settings()
