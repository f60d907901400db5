"""What this machine can verify of the deployment without a Docker engine: the compose file validates,
the compose services' own commands run as local processes with the environment the compose file gives
them (container hostnames and paths mapped to this machine's) and drive a round, and the images install
what the README installs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import redis
import yaml

from oracle.digits import generate
from tests.worker.loop import ROOT, digit_project, free_port, start, stop, wait_http, wait_job

COMPOSE = ROOT / "docker-compose.yml"
REDIS_URL = os.environ.get("BOXAL_TEST_REDIS_URL")


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with this process's environment, as `docker compose` would."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1), m.group(2) or ""), value)


def test_the_compose_file_validates() -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(
                "docker-compose is not installed (apt-get install docker-compose); .ci/run installs it"
            )
        pytest.skip("docker-compose is not installed")
    done = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_compose_file_has_what_production_needs() -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "migrate", "api", "worker", "flower"} <= set(services)
    assert (
        "healthcheck" in services["postgres"]
        and "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    )
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    device = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["capabilities"] == ["gpu"] and "container_name" not in services["worker"]  # scalable
    assert "ports" not in services["worker"]
    assert services["flower"]["profiles"] == ["monitoring"]
    for name in ("migrate", "api", "worker"):
        assert "boxal-data:/data" in services[name]["volumes"]
        assert services[name]["build"]["target"] in ("api", "worker")  # `docker compose up <name>` builds it


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.skipif(not REDIS_URL, reason="BOXAL_TEST_REDIS_URL is not set")
def test_compose_services_run_as_local_processes_and_drive_a_round(postgres_url: str, tmp_path: Path) -> None:
    services = _compose()["services"]
    scenes = generate(tmp_path / "images", train_images=12, test_images=3, size=96, seed=5)
    local = {  # the only differences from the containers: where the servers and folders are
        "postgres:5432": "127.0.0.1:5432",
        "redis://redis:6379/0": REDIS_URL,
        "/data": str(tmp_path / "data"),
        "/images": str(scenes.root),
    }
    envs = {}
    for name in ("migrate", "api", "worker"):
        env = {key: _interpolate(str(value)) for key, value in services[name]["environment"].items()}
        assert env["BOXAL_DATABASE_URL"].startswith("postgresql+psycopg://boxal:")
        env["BOXAL_DATABASE_URL"] = postgres_url  # this machine's server, database and user
        env["BOXAL_BROKER_URL"] = local["redis://redis:6379/0"]
        env["BOXAL_DATA_DIR"] = local["/data"]
        env["BOXAL_IMAGE_ROOTS"] = local["/images"]
        # the images put the installed console scripts on PATH; here they are beside this interpreter
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        envs[name] = env  # empty values stay empty, as in the containers
    redis.Redis.from_url(REDIS_URL).flushdb()

    migrate = subprocess.run(
        services["migrate"]["command"],
        cwd=ROOT,
        env={**os.environ, **envs["migrate"]},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr

    port = free_port()
    api_command = [str(part) for part in services["api"]["command"]]
    api_command[api_command.index("--port") + 1] = str(port)
    api_command[api_command.index("--host") + 1] = "127.0.0.1"  # tests stay on loopback
    api = start(api_command, envs["api"], tmp_path / "api.log")
    worker = start(
        [str(part) for part in services["worker"]["command"]], envs["worker"], tmp_path / "worker.log"
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url)
        generated = tmp_path / "data" / "admin-token"  # BOXAL_ADMIN_TOKEN is empty: the first start made one
        assert generated.stat().st_mode & 0o777 == 0o600
        headers = {"Authorization": f"Bearer {generated.read_text().strip()}"}
        with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
            pid, _ = digit_project(client, scenes, pool=12, initial=4, test=3)
            job = wait_job(client, client.post(f"/v1/projects/{pid}/rounds").json()["job_id"])
            assert job["state"] == "succeeded", job
            queries = client.post(f"/v1/projects/{pid}/queries", json={"k": 3, "annotator": "a"}).json()[
                "queries"
            ]
            assert len(queries) == 3
            assert client.get(f"/v1/projects/{pid}/curve").json()["points"][0]["round"] == 1
    finally:
        stop(worker)
        stop(api)


def test_the_images_install_what_the_readme_installs() -> None:
    readme = (ROOT / "README.md").read_text()
    dockerfile = (ROOT / "Dockerfile").read_text()
    installs = re.findall(r"^RUN pip install '?\.(\[[\w,]+\])?'?$", dockerfile, flags=re.M)
    assert sorted(installs) == ["", "[worker,weights]"]  # api: no extras (no torch); worker: engine, weights
    serve = readme.split("<!-- serve-command -->")[1].split("```bash")[1].split("```")[0]
    assert "pip install -e '.[worker,weights]'" in serve  # the worker image's extras are the README's
    assert "`pip install -e .` alone gives the API without torch" in readme  # the api image's
    for stage, command in (("api", "boxal serve --no-worker"), ("worker", "boxal worker")):
        assert f"FROM source AS {stage}" in dockerfile
        assert command.split()[1] in dockerfile
