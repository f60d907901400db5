"""The README and docs tell the same story as the code: every setting documented, the README short enough
to read in ten minutes, and its walk-through runs as printed against a real `boxal serve`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.settings import Settings
from oracle.goal import goal_reading, readme_cells

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "DEPLOYMENT.md"  # the table of every BOXAL_* setting


def test_every_setting_is_in_the_configuration_table() -> None:
    table = CONFIGURATION.read_text()
    for name in Settings.model_fields:
        assert f"| `BOXAL_{name.upper()}` |" in table, name


def test_the_compose_file_sets_only_settings_that_exist() -> None:
    import yaml

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {f"BOXAL_{name.upper()}" for name in Settings.model_fields}
    known.add("PROMETHEUS_MULTIPROC_DIR")  # prometheus_client's own; in the configuration table too
    assert "| `PROMETHEUS_MULTIPROC_DIR` |" in CONFIGURATION.read_text()
    for service in ("migrate", "api", "worker"):
        assert set(compose["services"][service]["environment"]) <= known


def test_the_readme_reads_in_ten_minutes_and_links_what_moved() -> None:
    text = README.read_text()
    assert len(text) < 15_000, len(text)
    for target in re.findall(r"\]\(((?:docs/)[^)#]+)", text):
        assert (ROOT / target).exists(), target


def _yolo_line(cls: int, bbox: list[float], image: object) -> str:
    x1, y1, x2, y2 = bbox
    w, h = image.width, image.height  # type: ignore[attr-defined]
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"


def _yolo_folder(root: Path) -> Path:
    """Digit scenes in the Ultralytics layout the walk-through reads: data.yaml, train/ and valid/."""
    from formats.coco import load_coco
    from oracle.digits import CLASSES, generate

    scenes = generate(root / "scenes", train_images=12, test_images=4, size=96, seed=5)
    data = root / "yolo"
    for subset, coco_json in (("train", scenes.train_json), ("valid", scenes.test_json)):
        coco = load_coco(coco_json)
        (data / subset / "images").mkdir(parents=True)
        (data / subset / "labels").mkdir()
        for image in coco.images:
            shutil.copy(scenes.images / image.file_name, data / subset / "images" / image.file_name)
            lines = [_yolo_line(a.category_id - min(coco.categories), a.bbox, image) for a in coco.annotations
                     if a.image_id == image.id]  # fmt: skip
            label = data / subset / "labels" / f"{Path(image.file_name).stem}.txt"
            label.write_text("\n".join(lines) + "\n")
    yaml = f"train: train/images\nval: valid/images\nnc: {len(CLASSES)}\nnames: {CLASSES}\n"
    (data / "data.yaml").write_text(yaml)
    return data


@pytest.mark.slow
def test_the_readme_walkthrough_runs_as_printed(tmp_path: Path) -> None:
    from tests.worker.loop import boxal, free_port, stop, wait_http

    block = re.search(r"<!-- walkthrough -->\n```bash\n(.*?)```", README.read_text(), flags=re.S)
    assert block, "README.md has no walk-through block"
    data = _yolo_folder(tmp_path)
    port = free_port()
    work = tmp_path / "work"  # the walk-through's directory: boxal-data/ is the server's data dir there
    work.mkdir()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("BOXAL_")}
    env = {**environment, "BOXAL_IMAGE_ROOTS": str(data), "BOXAL_PORT": str(port)}
    server = subprocess.Popen(
        [*boxal("serve", "--no-worker"), "--port", str(port)],
        cwd=work, env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url)
        ran = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.group(1)],
            cwd=work, env={**env, "DATA": str(data), "N": "4", "BOXAL_URL": url},
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
        assert '"round":1' in ran.stdout.replace(" ", "") and '"job_id"' in ran.stdout
        token = (work / "boxal-data" / "admin-token").read_text().strip()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            images = client.get("/v1/projects/1/images", params={"limit": 100}).json()["items"]
            events = client.get("/v1/projects/1/labels").json()["items"]
        pool = [im for im in images if im["split"] == "pool"]
        assert len(pool) == 12 and len([im for im in images if im["split"] == "test"]) == 4
        assert sum(im["fully_labeled"] for im in pool) == 5  # the 4 imported, and the image answered
        assert [e["action"] for e in events if e["kind"] == "answer"] == ["label_all"]
    finally:
        stop(server)


RESULT_TABLES = [README, ROOT / "docs" / "results" / "README.md"]


def _round_three_rows(doc: Path) -> Iterator[tuple[str, Path, list[dict[str, Any]]]]:
    """Each results-table row of ``doc`` that links a round-three report (one with a unit-auto arm): the
    line, the report's folder and its merged rounds. The earlier rounds' rows are read from their reports
    by hand."""
    for line in doc.read_text().splitlines():
        link = re.search(r"\]\(([^)]+)/summary\.md\)", line)
        if not line.startswith("|") or not link:
            continue
        report = (doc.parent / link.group(1)).resolve()
        rows = [json.loads(r) for r in (report / "rounds.jsonl").read_text().splitlines() if r.strip()]
        if any(r.get("unit") == "auto" for r in rows):
            yield line, report, rows


def test_the_results_tables_give_the_reports_numbers() -> None:
    """A results table's row for a round-three report (one with a unit-auto arm) holds the cells
    oracle.goal.readme_cells computes from that report's merged rounds: the README's numbers are the
    report's, never retyped."""
    checked = 0
    for doc in RESULT_TABLES:
        for line, _, rows in _round_three_rows(doc):
            assert readme_cells(rows) in line, (doc.name, line)
            checked += 1
    assert checked, "no results table links a round-three report"


def test_the_readme_reads_the_goal_as_its_reports_do() -> None:
    """The README's reading of the round-three goal against every experiment in its table is the one
    oracle.goal.goal_reading computes from those reports (the middle row's report for the third line)."""
    experiments, middle = {}, None
    for line, report, rows in _round_three_rows(README):
        experiments[report.name] = rows
        middle = report.name if line.startswith("| middle") else middle
    assert middle is not None, "the README's table has no middle experiment"
    assert goal_reading(experiments, middle) in " ".join(README.read_text().split())
