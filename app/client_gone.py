"""Whether the client of the request being served has gone: set by the ASGI layer, read by the database.

Abandoned requests whose work already runs in a thread cannot be cancelled (threads are never
interrupted), so each would still take its turn at the database. The request's task sets a
``threading.Event`` in a context variable; anyio copies the context into the worker thread, and the
database checks the event before a transaction begins and while a writer waits for SQLite's write
lock, so the work of a client that has gone stops there instead of queueing in front of everyone
else's. Outside a request (the worker, the CLI) there is no event and nothing is checked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from app.errors import ClientGone

_EVENT: ContextVar[threading.Event | None] = ContextVar("boxal_client_gone", default=None)


@contextmanager
def watching() -> Iterator[threading.Event]:
    """The event to set when this request's client disconnects, visible to everything it runs."""
    event = threading.Event()
    token = _EVENT.set(event)
    try:
        yield event
    finally:
        _EVENT.reset(token)


def event() -> threading.Event | None:
    return _EVENT.get()


def check() -> None:
    """Raise ``ClientGone`` if the request being served has lost its client."""
    gone = _EVENT.get()
    if gone is not None and gone.is_set():
        raise ClientGone("the client closed the request before its answer; nothing was done")
