"""Background work is sent to Celery by task name; the API never imports the worker or torch."""

from __future__ import annotations

import base64
import json
import logging
import os
from typing import Any

from celery import Celery
from kombu.exceptions import ChannelError

from app import broker
from app.errors import Unavailable
from app.settings import Settings

log = logging.getLogger(__name__)

TASK_RUN_ROUND = "boxal.round.run"
QUEUE = "boxal"


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings shared by the API's client and the worker (one source for both)."""
    config: dict[str, Any] = {
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        "task_default_queue": QUEUE,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": settings.broker_timeout_s,
    }
    if settings.is_embedded_broker:
        folder = settings.broker_dir
        for sub in ("queue", "processed", "control", broker.REJECTED):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        config["broker_url"] = f"{broker.SCHEME}://"  # kombu's filesystem transport made safe: app/broker.py
        config["broker_transport_options"] = {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # kombu's default is ./control in the cwd
            "store_processed": False,
            "polling_interval": 0.1,  # seconds between looks at the queue folder (kombu's default: 1)
        }
        # the filesystem transport has no broadcast: no remote control, no events
        config["worker_enable_remote_control"] = False
    else:
        config["broker_url"] = settings.broker_url
        config["broker_transport_options"] = {
            "socket_connect_timeout": settings.broker_timeout_s,
            "socket_timeout": max(settings.broker_timeout_s, 5.0),
            # training can take hours: redelivery of a lost task is done by the job reaper, not by this
            "visibility_timeout": 24 * 3600,
        }
    return config


def waiting_jobs(celery: Celery, queue: str = QUEUE) -> set[str] | None:
    """The job ids (each task's first argument) of the messages waiting in ``queue``, read without taking
    them: the embedded queue's files, or Redis's list. None where the broker cannot be read so (AMQP) or
    does not answer."""
    try:
        with celery.connection_for_read() as conn:
            if conn.transport.driver_type == broker.SCHEME:
                folder = celery.conf.broker_transport_options["data_folder_in"]
                raw: list[bytes] = []
                for name in os.listdir(folder):
                    if broker.is_message_of(name, queue):
                        try:
                            with open(os.path.join(folder, name), "rb") as handle:
                                raw.append(handle.read())
                        except OSError:  # taken by a consumer meanwhile, or not a file
                            continue
            elif conn.transport.driver_type == "redis":
                conn.ensure_connection(max_retries=1)
                with conn.channel() as channel:
                    raw = list(channel.client.lrange(queue, 0, -1))
            else:
                return None
    except Exception as exc:  # kombu raises many types for an unreachable broker
        log.warning("cannot read the messages waiting in %s: %s", queue, exc)
        return None
    return {job for job in map(_first_argument, raw) if job is not None}


def _first_argument(raw: bytes) -> str | None:
    try:
        message = json.loads(raw)
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0]) if args else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def make_celery(settings: Settings, name: str = "boxal") -> Celery:
    app = Celery(name, set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


class Enqueuer:
    """Sends tasks by name. Call only after the transaction that recorded the job has committed."""

    def __init__(self, settings: Settings, queue: str = QUEUE) -> None:
        self.settings = settings
        self.queue = queue
        self._celery: Celery | None = None

    @property
    def celery(self) -> Celery:
        if self._celery is None:
            self._celery = make_celery(self.settings, name="boxal-client")
        return self._celery

    def send(self, task: str, args: list[Any]) -> None:
        try:
            self.celery.send_task(
                task,
                args=args,
                queue=self.queue,
                retry=True,
                retry_policy={
                    "max_retries": 2,
                    "interval_start": 0.2,
                    "interval_step": 0.5,
                    "interval_max": 1,
                },
            )
        except Exception as exc:  # kombu raises many types for an unreachable broker
            log.warning("enqueue %s failed: %s", task, exc)
            raise Unavailable(
                f"the task broker is unavailable ({type(exc).__name__}); try again later"
            ) from exc

    def depth(self) -> int | None:
        """Tasks waiting in the queue, or None if the broker does not answer."""
        try:
            with self.celery.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.settings.broker_timeout_s)
                with conn.channel() as channel:
                    try:
                        return int(channel.queue_declare(self.queue, passive=True).message_count)
                    except ChannelError:  # not declared yet (Redis keeps no empty list): nothing waits
                        return 0
        except Exception:
            return None

    def ping(self) -> bool:
        try:
            with self.celery.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=self.settings.broker_timeout_s)
            return True
        except Exception:
            return False
