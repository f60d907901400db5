"""Fixtures the API tests share."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.factories import write_image


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A web server on loopback serving a folder of images (its directory listing included)."""
    folder = tmp_path / "site"
    for i in range(2):
        write_image(folder / "pics" / f"p{i}.png", 40, 30 + i)
    handler = functools.partial(
        type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}), directory=str(folder)
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pics/"
    server.shutdown()
    server.server_close()
