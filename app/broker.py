"""The embedded default's task queue: kombu's filesystem transport, made safe between processes.

kombu's own ``filesystem://`` writes a message straight into its final ``*.msg`` name and its consumer
moves any ``*.msg`` file it lists without taking the writer's lock, so a worker can read a file that is
still empty or half written; the JSON error then kills the worker. This transport (scheme ``boxalfs``,
what the embedded default uses):

- writes each message under a name the consumer ignores (``*.msg.part``), flushes it to disk and renames
  it into place, so a message is visible whole or not at all;
- claims a message by renaming it into the ``processed`` folder beside the queue (one atomic rename: two
  consumers never take the same file), reads it there and removes it;
- sets a message it cannot read (not a file, not JSON, not a kombu message) aside in the ``rejected``
  folder, logs it and counts it (``boxal_broker_messages_set_aside_total``), and goes on to the next: never
  a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from queue import Empty
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads

log = logging.getLogger(__name__)

SCHEME = "boxalfs"
PARTIAL = ".part"  # a message being written: not yet a ``*.{queue}.msg`` name, so never listed as one
REJECTED = "rejected"  # beside the queue folder: messages that could not be read, kept for a look


def message_name(queue: str) -> str:
    """A new message's file name: ordered by time (the consumer takes the oldest first), unique."""
    return f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"


def is_message_of(name: str, queue: str) -> bool:
    """kombu's rule for which files hold ``queue``'s messages (``<stamp>_<uuid>.<queue>.msg``)."""
    return name.partition(".")[2] == f"{queue}.msg"


class Channel(filesystem.Channel):
    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:  # type: ignore[override]
        final = Path(self.data_folder_out) / message_name(queue)
        partial = final.with_name(final.name + PARTIAL)
        try:
            with partial.open("wb") as handle:
                handle.write(str_to_bytes(dumps(message)))
                handle.flush()
                os.fsync(handle.fileno())  # acknowledged to the sender: on disk, not only in a cache
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise ChannelError(f"cannot add a message to {self.data_folder_out}: {exc}") from exc

    def _get(self, queue: str, timeout: Any = None) -> Any:
        folder = Path(self.data_folder_in)
        claims = Path(self.processed_folder)
        for name in sorted(os.listdir(folder)):
            if not is_message_of(name, queue):
                continue
            claimed = claims / name
            try:
                os.rename(folder / name, claimed)  # atomic: whoever renames it first has it
            except OSError:
                continue  # another consumer took it, or it was purged
            try:
                raw = claimed.read_bytes()
                payload = loads(bytes_to_str(raw))
                self.Message(payload, channel=self)  # what the consumer will build: it must not fail there
            except Exception as exc:
                set_aside(claimed, f"{type(exc).__name__}: {exc}")
                continue
            if not self.store_processed:
                with contextlib.suppress(OSError):
                    claimed.unlink()
            return payload
        raise Empty()


def set_aside(path: Path, why: str) -> Path:
    """Move an unreadable message into the ``rejected`` folder beside its own, log and count it."""
    from app.metrics import MESSAGES_SET_ASIDE  # after the metrics directory is chosen (app/serving.py)

    target = path.parent.parent / REJECTED / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(path, target)
    except OSError:
        target = path
    size = target.stat().st_size if target.exists() else -1
    log.error("broker message %s cannot be read (%s, %d bytes): set aside as %s", path.name, why, size,
              target)  # fmt: skip
    MESSAGES_SET_ASIDE.inc()
    return target


class Transport(filesystem.Transport):
    Channel = Channel
    driver_type = SCHEME
    driver_name = SCHEME


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")
