"""16 annotators lease k=5 at a time from 2,000 boxes until none are left, answering as they go."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import func, select

from app.models import Box, LabelEvent
from tests.conftest import ADMIN_TOKEN, auth
from tests.factories import create_project, register_images, seed_pool

CLIENTS = 16
K = 5


def _annotate(url: str, pid: int, name: str) -> tuple[list[int], list[int], list[int]]:
    leased: list[int] = []
    answered: list[int] = []
    errors: list[int] = []
    with httpx.Client(base_url=url, timeout=60, headers=auth(ADMIN_TOKEN)) as http:
        while True:
            body = {"k": K, "annotator": name, "unit": "box"}  # the box queries alone, no image fallback
            response = http.post(f"/v1/projects/{pid}/queries", json=body)
            if response.status_code != 200:
                errors.append(response.status_code)
                continue
            queries = response.json()["queries"]
            if not queries:
                return leased, answered, errors
            leased += [q["box_id"] for q in queries]
            labels = [
                {
                    "query_id": q["query_id"],
                    "action": "accept" if q["box_id"] % 2 else "background",
                    "duration_ms": 100,
                }
                for q in queries
            ]
            response = http.post(f"/v1/projects/{pid}/labels", json={"labels": labels})
            if response.status_code == 200:
                answered += [q["query_id"] for q in queries]
            else:
                errors.append(response.status_code)


def test_every_box_is_leased_exactly_once_and_every_answer_is_logged(
    client, database, live_server, tmp_path: Path
) -> None:
    project = create_project(client, round_size=1_000_000)
    pid = project["id"]
    images = register_images(client, pid, tmp_path / "pool", 100)
    box_ids = seed_pool(database, pid, [im["id"] for im in images], 20, shuffle=7)
    assert len(box_ids) == 2000

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda i: _annotate(live_server.url, pid, f"annotator-{i}"), range(CLIENTS)))

    leased = [b for r in results for b in r[0]]
    answered = [q for r in results for q in r[1]]
    assert [e for r in results for e in r[2]] == []
    assert sorted(leased) == sorted(box_ids)  # each box exactly once
    assert sum(1 for r in results if r[0]) > 1  # the work really was shared
    with database.transaction(write=False) as session:
        logged = set(session.scalars(select(LabelEvent.query_id).where(LabelEvent.project_id == pid)))
        assert logged == set(answered) and len(answered) == 2000
        unlabeled = session.scalar(
            select(func.count()).where(Box.project_id == pid, Box.status == "unlabeled")
        )
        assert unlabeled == 0
