"""Clients that give up mid-request, for the abandoned-request test and its benchmark: raw HTTP/1.1 over
loopback sockets that close or reset 1-8 ms after sending, a mix of writes and reads, lease and label calls
included, some uploads whose bodies never end."""

from __future__ import annotations

import asyncio
import io
import json
import random
import socket
import struct
from collections.abc import Callable


def http_request(
    token: str,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str = "application/json",
    declared: int | None = None,
) -> bytes:
    """The bytes of one request; ``declared`` overrides Content-Length (a body that never ends)."""
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if declared is None else declared}\r\n\r\n"
    )
    return head.encode() + body


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (32, 24), (10, 200, 30)).save(out, "PNG")
    return out.getvalue()


def _requests(token: str, pid: int, leased: list[int], count: int, rng: random.Random) -> list[bytes]:
    """``count`` requests drawn from the mix, against project ``pid`` whose leases ``leased`` they answer."""
    boundary = "boxalabuse"
    multipart = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="u.png"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + _png()
        + f"\r\n--{boundary}--\r\n".encode()
    )

    def labels(i: int) -> bytes:
        answers = [{"query_id": q, "action": "background"} for q in rng.sample(leased, 3)]
        return http_request(
            token, "POST", f"/v1/projects/{pid}/labels", json.dumps({"labels": answers}).encode()
        )

    makers: list[Callable[[int], bytes]] = [
        lambda i: http_request(
            token, "POST", "/v1/projects", json.dumps({"name": f"gone-{i}", "classes": ["a"]}).encode()
        ),
        lambda i: http_request(token, "GET", "/v1/projects?limit=1000"),
        lambda i: http_request(
            token, "POST", f"/v1/projects/{pid}/queries", b'{"k": 5, "annotator": "gone"}'
        ),
        labels,
        lambda i: http_request(token, "DELETE", f"/v1/projects/{pid}/queries/{rng.choice(leased)}"),
        lambda i: http_request(token, "GET", f"/v1/projects/{pid}/images?limit=1000"),
        lambda i: http_request(token, "POST", f"/v1/projects/{pid}/images", b'{"ima', declared=4000),
        lambda i: http_request(
            token,
            "POST",
            f"/v1/projects/{pid}/images",
            multipart,
            content_type=f"multipart/form-data; boundary={boundary}",
        ),
        lambda i: http_request(token, "GET", "/health"),
    ]
    return [rng.choice(makers)(i) for i in range(count)]


async def _give_up(port: int, request: bytes, after_s: float, reset: bool) -> None:
    """Send a request, then go away after ``after_s`` without reading the answer (RST or FIN)."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(after_s)
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
    except OSError:
        pass


def abuse(port: int, token: str, pid: int, leased: list[int], count: int, seed: int) -> None:
    """A burst of ``count`` requests (200 connections at a time) whose clients all give up."""
    rng = random.Random(seed)
    requests = _requests(token, pid, leased, count, rng)

    async def main() -> None:
        limit = asyncio.Semaphore(200)

        async def one(request: bytes) -> None:
            async with limit:
                await _give_up(port, request, rng.uniform(0.001, 0.008), rng.random() < 0.3)

        await asyncio.gather(*(one(request) for request in requests))

    asyncio.run(main())
