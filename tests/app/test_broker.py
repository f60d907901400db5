"""The embedded broker's transport (app/broker.py): a message is visible whole or not at all, and a consumer
that meets a file it cannot read sets it aside and goes on, never raising; and the job ids of the messages
waiting in a queue read without taking them (app/enqueue.py, waiting_jobs: the job reaper's guard against
sending a job twice), on the embedded queue and on Redis."""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from queue import Empty

import pytest

from app.broker import PARTIAL, is_message_of, message_name
from app.enqueue import QUEUE, TASK_RUN_ROUND, Enqueuer, make_celery, waiting_jobs
from app.settings import Settings


@pytest.fixture
def channel(tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", _env_file=None)  # type: ignore[call-arg]
    with make_celery(settings).connection_for_write() as connection:
        yield connection.default_channel, settings.broker_dir


def _message(body: dict) -> dict:
    """A kombu message as a producer writes it (what the consumer gets back)."""
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {},
        "properties": {"body_encoding": "base64", "delivery_info": {}, "delivery_tag": "t-1"},
    }


def test_a_message_is_written_under_a_name_no_consumer_lists_then_renamed_whole(channel) -> None:
    chan, folder = channel
    name = message_name(QUEUE)
    assert is_message_of(name, QUEUE) and not is_message_of(name + PARTIAL, QUEUE)
    chan._put(QUEUE, _message({"n": 1}))
    files = list((folder / "queue").iterdir())
    assert len(files) == 1 and is_message_of(files[0].name, QUEUE)  # no partial file left behind
    assert json.loads(files[0].read_text())["properties"]["delivery_tag"] == "t-1"
    assert chan._get(QUEUE)["body"] == _message({"n": 1})["body"]
    assert not list((folder / "queue").iterdir()) and not list((folder / "processed").iterdir())


@pytest.mark.parametrize(
    "content",
    [b"", b'{"body": "eyJ0YX', b"[1, 2]", b'{"body": "x"}', b"\xff\xfe not text"],
    ids=["empty", "half-json", "not-an-object", "no-properties", "not-utf8"],
)
def test_an_unreadable_message_is_set_aside_and_the_next_one_served(channel, content: bytes) -> None:
    chan, folder = channel
    (folder / "queue" / f"1_bad.{QUEUE}.msg").write_bytes(content)
    (folder / "queue" / f"2_good.{QUEUE}.msg").write_text(json.dumps(_message({"n": 2})))
    assert chan._get(QUEUE)["properties"]["delivery_tag"] == "t-1"  # the good one, past the bad one
    assert (folder / "rejected" / f"1_bad.{QUEUE}.msg").read_bytes() == content
    with pytest.raises(Empty):
        chan._get(QUEUE)
    assert chan._size(QUEUE) == 0


def test_partial_files_and_other_queues_are_left_alone(channel) -> None:
    chan, folder = channel
    partial = folder / "queue" / f"1_x.{QUEUE}.msg{PARTIAL}"
    partial.write_bytes(b'{"bo')
    other = folder / "queue" / "1_y.elsewhere.msg"
    other.write_text(json.dumps(_message({})))
    with pytest.raises(Empty):
        chan._get(QUEUE)
    assert partial.exists() and other.exists() and chan._size(QUEUE) == 0


def test_a_directory_named_like_a_message_is_set_aside(channel) -> None:
    chan, folder = channel
    (folder / "queue" / f"1_dir.{QUEUE}.msg").mkdir()
    (folder / "queue" / f"2_good.{QUEUE}.msg").write_text(json.dumps(_message({"n": 2})))
    assert chan._get(QUEUE)["properties"]["delivery_tag"] == "t-1"
    assert (folder / "rejected" / f"1_dir.{QUEUE}.msg").is_dir()


REDIS = os.environ.get("BOXAL_TEST_REDIS_URL")


@pytest.mark.parametrize("broker", ["embedded", "redis"])
def test_the_jobs_waiting_in_the_queue_are_read_without_taking_them(tmp_path: Path, broker: str) -> None:
    if broker == "redis" and not REDIS:
        pytest.skip("BOXAL_TEST_REDIS_URL is not set")
    queue = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(  # type: ignore[call-arg]
        data_dir=tmp_path / "data", broker_url=REDIS if broker == "redis" else None, _env_file=None
    )
    enqueuer = Enqueuer(settings, queue=queue)
    assert waiting_jobs(enqueuer.celery, queue) == set()
    for job in ("job-a", "job-b", "job-a"):
        enqueuer.send(TASK_RUN_ROUND, [job])
    try:
        assert waiting_jobs(enqueuer.celery, queue) == {"job-a", "job-b"}
        assert enqueuer.depth() == 3  # read, not taken
    finally:
        with enqueuer.celery.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue)
