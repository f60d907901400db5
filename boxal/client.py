"""A client of boxal's REST API (v1): one method per endpoint, over httpx.

    from boxal.client import Client

    with Client("http://127.0.0.1:8000", token="bxl_...") as boxal:
        for query in boxal.lease(1, k=5, annotator="ana"):
            boxal.answer(1, [{"query_id": query["query_id"], "action": "accept"}])

Errors are ``BoxalError``, carrying the server's ``error`` and ``detail`` and the HTTP status. Connection
errors and 503 (the server is busy: SQLite's write lock, a round switching) are retried with exponential
backoff, honouring ``Retry-After``; a request that may have reached the server is retried only where
doing it twice is harmless (reads, releases, answers: an answer is idempotent per query). Lists that the
server pages (projects, images, rounds, the label log, the curve) are followed to their end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx

JSON = dict[str, Any]
RETRIED = (503,)
SAFE_POSTS = ("/labels",)  # POSTs that are idempotent, so safe to send again after a lost answer


class BoxalError(RuntimeError):
    """An answer the server gave as an error: ``status`` (HTTP), ``error`` (its name), ``detail``."""

    def __init__(self, method: str, path: str, status: int, error: str, detail: Any) -> None:
        super().__init__(f"{method} {path}: {status} {error}: {detail}")
        self.method, self.path, self.status, self.error, self.detail = method, path, status, error, detail


class Client:
    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        timeout: float = 120,
        retries: int = 5,
        backoff: float = 0.5,
        page_size: int = 1000,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.retries, self.backoff, self.page_size = retries, backoff, page_size
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- transport ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        repeatable = method in ("GET", "HEAD", "DELETE", "PATCH") or path.endswith(SAFE_POSTS)
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout):
                if last:
                    raise
            except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout):
                if last or not repeatable:  # it may have been done: only a harmless request goes again
                    raise
            else:
                if response.status_code not in RETRIED or last:
                    return response
                wait = _retry_after(response)
                if wait is not None:
                    time.sleep(min(wait, 60))
                    continue
            time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            error = body.get("error") if isinstance(body, dict) else None
            detail = body.get("detail") if isinstance(body, dict) else None
            raise BoxalError(method, path, response.status_code, error or response.reason_phrase,
                             detail if detail is not None else response.text[:500])  # fmt: skip
        if not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def _pages(
        self, path: str, *, key: str = "items", params: JSON | None = None, page: int = 1000
    ) -> Iterator[JSON]:
        cursor = None
        while True:
            query = {**(params or {}), "limit": page, **({"cursor": cursor} if cursor is not None else {})}
            body = self._call("GET", path, params=query)
            yield from body[key]
            cursor = body.get("next_cursor")
            if cursor is None:
                return

    # --- service ---------------------------------------------------------------------------------

    def health(self) -> JSON:
        return self._call("GET", "/health")

    # --- projects --------------------------------------------------------------------------------

    def create_project(self, name: str, classes: list[str], settings: JSON | None = None) -> JSON:
        return self._call(
            "POST", "/v1/projects", json={"name": name, "classes": classes, "settings": settings or {}}
        )

    def projects(self) -> list[JSON]:
        return list(self._pages("/v1/projects"))

    def project(self, pid: int) -> JSON:
        return self._call("GET", f"/v1/projects/{pid}")

    def update_settings(self, pid: int, settings: JSON) -> JSON:
        return self._call("PATCH", f"/v1/projects/{pid}", json={"settings": settings})

    # --- images and imports ----------------------------------------------------------------------

    def register_images(self, pid: int, images: list[JSON], *, batch: int = 500) -> list[JSON]:
        """Register image files the server can read (``uri``, ``split``, optional ``external_id``,
        ``width``, ``height``), ``batch`` per request."""
        out: list[JSON] = []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch]
            out += self._call("POST", f"/v1/projects/{pid}/images", json={"images": chunk})["images"]
        return out

    def upload_images(self, pid: int, files: list[str | Path], split: str = "pool") -> list[JSON]:
        """Upload image files from this machine (multipart)."""
        handles = [open(path, "rb") for path in files]  # noqa: SIM115 - closed below
        try:
            parts = [("files", (Path(f).name, h)) for f, h in zip(files, handles, strict=True)]
            return self._call("POST", f"/v1/projects/{pid}/images", files=parts, data={"split": split})[
                "images"
            ]
        finally:
            for handle in handles:
                handle.close()

    def images(self, pid: int, split: Literal["pool", "test"] | None = None) -> list[JSON]:
        return list(self._pages(f"/v1/projects/{pid}/images", params={"split": split} if split else None))

    def image(self, pid: int, image_id: int) -> JSON:
        return self._call("GET", f"/v1/projects/{pid}/images/{image_id}")

    def image_content(self, pid: int, image_id: int) -> bytes:
        return self._call("GET", f"/v1/projects/{pid}/images/{image_id}/content")

    def import_coco(
        self, pid: int, data: JSON, kind: str = "annotations", model_version: str | None = None
    ) -> JSON:
        body = {
            "format": "coco",
            "kind": kind,
            "data": data,
            **({"model_version": model_version} if model_version else {}),
        }
        return self._call("POST", f"/v1/projects/{pid}/imports", json=body)

    def import_directory(self, pid: int, format: Literal["voc", "yolo"], path: str, **options: Any) -> JSON:
        """A VOC or YOLO directory the server can read; options as the endpoint's (image_set, subsets,
        ids, register_split)."""
        return self._call(
            "POST", f"/v1/projects/{pid}/imports", json={"format": format, "path": path, **options}
        )

    # --- queries and labels ----------------------------------------------------------------------

    def lease(
        self, pid: int, k: int, annotator: str, unit: Literal["box", "image", "review"] | None = None
    ) -> list[JSON]:
        body: JSON = {"k": k, "annotator": annotator, **({"unit": unit} if unit else {})}
        return self._call("POST", f"/v1/projects/{pid}/queries", json=body)["queries"]

    def release(self, pid: int, query_id: int) -> None:
        self._call("DELETE", f"/v1/projects/{pid}/queries/{query_id}")

    def answer(self, pid: int, labels: list[JSON]) -> JSON:
        """Answer leased queries: ``accept``, ``adjust`` (bbox, label), ``background``, ``duplicate``, or
        an image's boxes. Idempotent per query: sending an answer again changes nothing."""
        return self._call("POST", f"/v1/projects/{pid}/labels", json={"labels": labels})

    def label_events(self, pid: int) -> list[JSON]:
        return list(self._pages(f"/v1/projects/{pid}/labels"))

    # --- rounds, jobs, curve, export ---------------------------------------------------------------

    def start_round(self, pid: int, *, force: bool = False) -> JSON:
        """Close the open round and retrain; ``force``: also before it received its round_size."""
        return self._call("POST", f"/v1/projects/{pid}/rounds", json={"force": True} if force else None)

    def rounds(self, pid: int) -> list[JSON]:
        return list(self._pages(f"/v1/projects/{pid}/rounds"))

    def job(self, job_id: str) -> JSON:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def wait_job(
        self,
        job_id: str,
        *,
        timeout: float = 24 * 3600,
        poll: float = 0.5,
        on_progress: Callable[[JSON], Any] | None = None,
    ) -> JSON:
        """Poll a job until it succeeds or fails (returned either way); TimeoutError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in ("succeeded", "failed"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f} s")
            time.sleep(poll)

    def curve(self, pid: int) -> list[JSON]:
        return list(self._pages(f"/v1/projects/{pid}/curve", key="points"))

    def export(
        self, pid: int, format: Literal["coco", "voc", "yolo", "partial"] = "coco", **options: Any
    ) -> Any:
        """``coco`` and ``partial``: the JSON object; ``voc`` and ``yolo``: the zip's bytes. Options as the
        endpoint's (predictions, split, complete, images)."""
        params = {
            "format": format,
            **{k: str(v).lower() if isinstance(v, bool) else v for k, v in options.items()},
        }
        return self._call("GET", f"/v1/projects/{pid}/export", params=params)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None
