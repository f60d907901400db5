"""`boxal wait` and `boxal token` find what `boxal serve` uses as it does (BOXAL_HOST/BOXAL_PORT, the data
dir and the admin token kept there) and say in one line what they could not reach (app/cli_client.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.worker.loop import boxal, free_port

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOXAL_")}
    return subprocess.run(
        boxal(*args),
        cwd=ROOT,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_wait_finds_the_server_and_its_admin_token_as_serve_does(live_server, client, tmp_path: Path) -> None:
    data = client.app.state.settings.resolved_data_dir
    (data / "admin-token").write_text(client.headers["Authorization"].removeprefix("Bearer ") + "\n")
    env = {"BOXAL_PORT": str(live_server.port), "BOXAL_DATA_DIR": str(data)}
    unknown = _run("wait", "no-such-job", env=env)  # reached, and its token taken: the job is not there
    assert unknown.returncode == 1 and "job no-such-job does not exist on this server" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    wrong_port = _run("wait", "j", env={**env, "BOXAL_PORT": str(free_port())})
    assert wrong_port.returncode == 1 and "no boxal server answers at http://127.0.0.1:" in wrong_port.stderr
    assert "Traceback" not in wrong_port.stderr
    bad_token = _run("wait", "j", "--token", "bxl_not-a-token-of-this-server", env=env)
    assert bad_token.returncode == 1 and "the server refused the token" in bad_token.stderr


def test_token_commands_take_the_data_dir_and_name_the_database(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert _run("db", "upgrade", env={"BOXAL_DATA_DIR": data}).returncode == 0
    made = _run("token", "create", "--name", "ana", "--project", "1", "--data-dir", data)
    assert made.returncode == 2 and "projects [1] do not exist (in the database sqlite:///" in made.stderr
    assert f"from the data dir {data}" in made.stderr and "Traceback" not in made.stderr
    made = _run("token", "create", "--name", "root", "--role", "admin", "--data-dir", data)
    assert made.returncode == 0 and made.stdout.startswith("token 1 (admin, root): bxl_"), made.stderr
    listed = _run("token", "list", "--data-dir", data)
    assert listed.returncode == 0 and "\tadmin\troot\t" in listed.stdout
    elsewhere = _run("token", "list", "--data-dir", str(tmp_path / "nowhere"))
    assert elsewhere.returncode == 2 and "cannot use the database" in elsewhere.stderr
    assert "Traceback" not in elsewhere.stderr
