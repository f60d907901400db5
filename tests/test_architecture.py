"""The layering docs/ARCHITECTURE.md describes, and the size bounds that keep modules readable."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 80


def _imports(path: Path) -> set[str]:
    """Every module a file imports (absolute names), at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _python(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_oracle_talks_to_boxal_over_http_only() -> None:
    for path in _python("oracle"):
        assert not {_top(n) for n in _imports(path)} & {"app", "worker"}, path
    for path in _python("boxal"):  # the client library: httpx and the standard library
        assert not {_top(n) for n in _imports(path)} & {"app", "worker", "oracle", "formats"}, path


def test_benchmarks_import_no_tests_and_formats_imports_no_boxal() -> None:
    for path in _python("bench"):
        assert "tests" not in {_top(n) for n in _imports(path)}, path
    for path in _python("formats"):
        assert not {_top(n) for n in _imports(path)} & {"app", "worker", "oracle"}, path


def test_the_api_takes_only_the_acquisition_registry_from_the_worker() -> None:
    for path in _python("app"):
        from_worker = {n for n in _imports(path) if _top(n) == "worker"}
        assert from_worker <= {"worker", "worker.acquisition"}, (path, from_worker)
        if "worker" in from_worker:
            assert "from worker import acquisition" in path.read_text(), path


def test_modules_and_functions_stay_short() -> None:
    for path in _python("app") + _python("worker"):
        source = path.read_text()
        assert source.count("\n") <= MAX_MODULE_LINES, f"{path}: {source.count(chr(10))} lines"
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{path}: {node.name} is {length} lines"


def test_the_worker_reads_its_settings_when_it_starts_not_at_import() -> None:
    probe = (
        "import os\n"
        "import worker.tasks\n"  # importing the tasks must not read the settings yet
        "from app.settings import get_settings\n"
        "get_settings.cache_clear()\n"
        "os.environ['BOXAL_WORKER_CONCURRENCY'] = '3'\n"
        "os.environ['BOXAL_TASK_TIME_LIMIT_S'] = '77'\n"
        "from worker.celery_app import app\n"
        "print(app.conf.worker_concurrency, app.conf.task_soft_time_limit)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOXAL_")}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "77"]
