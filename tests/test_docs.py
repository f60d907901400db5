"""The README and docs tell the same story as the code."""

from __future__ import annotations

from pathlib import Path

from app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"| `BOXAL_{name.upper()}` |" in readme, name


def test_the_compose_file_sets_only_settings_that_exist() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {f"BOXAL_{name.upper()}" for name in Settings.model_fields}
    known.add("PROMETHEUS_MULTIPROC_DIR")  # prometheus_client's own; in the README's table too
    assert "| `PROMETHEUS_MULTIPROC_DIR` |" in (ROOT / "README.md").read_text()
    for service in ("migrate", "api", "worker"):
        assert set(compose["services"][service]["environment"]) <= known
