"""The OpenAPI schema tells the truth: schemathesis, every check (not only "no 5xx"), against a running
`boxal serve`. Its conformance checks send schema-valid requests that must be accepted, schema-invalid ones
that must be refused, methods the schema does not list (405 with Allow), and requests without the token;
tests/app/schemathesis.toml names the few rules the schema cannot state and why."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.factories import write_image
from tests.worker.loop import HEADERS, ROOT, TOKEN, boxal, free_port, start, stop, wait_http

CONFIG = ROOT / "tests" / "app" / "schemathesis.toml"
EXAMPLES = 30  # per operation and phase: about a minute on 2 cores


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("conformance")
    port = free_port()
    env = {"BOXAL_DATA_DIR": str(root / "data"), "BOXAL_IMAGE_ROOTS": str(root)}
    process = start(boxal("serve", "--port", str(port), "--no-worker"), env, root / "serve.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url)
        with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as client:
            # something for the generated requests to find: a project with a pool and a test image
            project = client.post("/v1/projects", json={"name": "st", "classes": ["a", "b"]}).json()
            for split in ("pool", "test"):
                path = write_image(root / f"{split}.png")
                client.post(
                    f"/v1/projects/{project['id']}/images",
                    json={"images": [{"uri": f"file://{path}", "split": split}]},
                ).raise_for_status()
        yield url
    finally:
        stop(process)


@pytest.mark.slow
def test_schemathesis_finds_no_conformance_failure(served: str) -> None:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--no-color",
        "--config-file",
        str(CONFIG),
        "run",
        f"{served}/openapi.json",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "failed" not in done.stdout.split("SUMMARY")[-1]


def test_405_names_every_method_of_the_path(served: str) -> None:
    with httpx.Client(base_url=served, headers=HEADERS, timeout=30) as client:
        response = client.request("TRACE", "/v1/projects/1")
        assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
        assert response.headers["allow"] == "GET, HEAD, PATCH"  # two routes of the same path, both named


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"seed": False}, "seed"),
        ({"k": "5"}, "k"),
        ({"t_d": "0.5"}, "t_d"),
        ({"warm_start": 1}, "warm_start"),
    ],
)
def test_types_are_strict(served: str, settings: dict, field: str) -> None:
    with httpx.Client(base_url=served, headers=HEADERS, timeout=30) as client:
        made = client.post(
            "/v1/projects", json={"name": f"strict-{field}", "classes": ["a"], "settings": settings}
        )
        changed = client.patch("/v1/projects/1", json={"settings": settings})
    for response in (made, changed):
        assert response.status_code == 422 and field in response.json()["detail"], response.text


def test_limits_of_the_settings_are_in_the_schema(served: str, tmp_path: Path) -> None:
    schema = httpx.get(f"{served}/openapi.json").json()
    lease = schema["components"]["schemas"]["LeaseIn"]["properties"]["k"]["anyOf"][0]
    assert lease["maximum"] == 100  # BOXAL_MAX_K
    limits = {
        p["schema"].get("maximum")
        for path in schema["paths"].values()
        for op in path.values()
        for p in op.get("parameters", [])
        if p["name"] == "limit"
    }
    assert limits == {1000}  # BOXAL_MAX_PAGE_SIZE, on every paged list
    classes = schema["components"]["schemas"]["ProjectCreate"]["properties"]["classes"]
    assert classes["uniqueItems"] is True


def test_every_ref_of_the_served_schema_resolves(served: str) -> None:
    """Client generators and schemathesis follow every $ref; one to a missing component breaks them."""
    schema = httpx.get(f"{served}/openapi.json", timeout=30).json()

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    found = refs(schema)
    assert "#/components/schemas/ImagesIn" in found  # the body POST .../images reads itself
    for ref in found:
        node: object = schema
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
            node = node[part]
