"""A thin client of boxal's REST API (v1), over httpx. The oracle knows the server only through this."""

from __future__ import annotations

import time
from typing import Any

import httpx


class BoxalError(RuntimeError):
    pass


class BoxalClient:
    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(5):
            response = self.http.request(method, path, **kwargs)
            if response.status_code != 503 or attempt == 4:
                break
            time.sleep(2**attempt)  # the server says: retry shortly
        if response.status_code >= 400:
            raise BoxalError(f"{method} {path}: {response.status_code} {response.text[:500]}")
        return response.json() if response.content else None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def create_project(self, name: str, classes: list[str], settings: dict[str, Any]) -> dict[str, Any]:
        return self._call(
            "POST", "/v1/projects", json={"name": name, "classes": classes, "settings": settings}
        )

    def register_images(self, pid: int, images: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for start in range(0, len(images), 500):
            out += self._call(
                "POST", f"/v1/projects/{pid}/images", json={"images": images[start : start + 500]}
            )["images"]
        return out

    def import_coco(self, pid: int, data: dict[str, Any], kind: str = "annotations") -> dict[str, Any]:
        return self._call(
            "POST", f"/v1/projects/{pid}/imports", json={"format": "coco", "kind": kind, "data": data}
        )

    def project(self, pid: int) -> dict[str, Any]:
        return self._call("GET", f"/v1/projects/{pid}")

    def update_settings(self, pid: int, settings: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/v1/projects/{pid}", json={"settings": settings})

    def start_round(self, pid: int) -> dict[str, Any]:
        return self._call("POST", f"/v1/projects/{pid}/rounds")

    def rounds(self, pid: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/projects/{pid}/rounds", params={"limit": 1000})["items"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def lease(self, pid: int, k: int, annotator: str, unit: str | None = None) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"k": k, "annotator": annotator}
        if unit:
            body["unit"] = unit
        return self._call("POST", f"/v1/projects/{pid}/queries", json=body)["queries"]

    def release(self, pid: int, query_id: int) -> None:
        self._call("DELETE", f"/v1/projects/{pid}/queries/{query_id}")

    def answer(self, pid: int, labels: list[dict[str, Any]]) -> dict[str, Any]:
        return self._call("POST", f"/v1/projects/{pid}/labels", json={"labels": labels})

    def curve(self, pid: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/projects/{pid}/curve", params={"limit": 1000})["points"]

    def wait_job(self, job_id: str, *, timeout: float = 24 * 3600, on_progress: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["state"] in ("succeeded", "failed"):
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job['state']} after {timeout:.0f} s")
            time.sleep(0.5)
