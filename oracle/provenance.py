"""What a run was made with, written beside its results: the packages, the machine, the code's commit."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

FALSE = ("0", "false", "f", "no", "n", "off")  # what pydantic reads as false in a BOXAL_* setting
PACKAGES = (
    "boxal",
    "torch",
    "torchvision",
    "detectron2",
    "numpy",
    "pycocotools",
    "fastapi",
    "sqlalchemy",
    "celery",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str | None:
    """The checkout's HEAD; BOXAL_COMMIT where the code runs outside one (an image, a copied tree)."""
    if os.environ.get("BOXAL_COMMIT"):
        return os.environ["BOXAL_COMMIT"]
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


@functools.cache
def accelerator() -> str | None:
    """The GPU the worker trains on (the engine's device "auto" picks CUDA when there is one), or None;
    asked once per process (a run's machine line and its environment both name it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine() -> str:
    """One line for a run's record: what its CPU time and wall time were spent on."""
    gpu = accelerator()
    if gpu:  # an embedded server's worker reads the same BOXAL_* environment as this process
        mixed = os.environ.get("BOXAL_MIXED_PRECISION", "true").lower() not in FALSE
        gpu += " (mixed precision)" if mixed else " (float32)"
    # runs made side by side on one machine are given one compute thread each (OMP_NUM_THREADS=1)
    threads = os.environ.get("OMP_NUM_THREADS")
    return (
        f"{os.cpu_count()} CPUs, {platform.machine()}"
        + (f", OMP_NUM_THREADS={threads}" if threads else "")
        + (f", {gpu}" if gpu else "")
    )


def environment() -> dict[str, Any]:
    return {
        "packages": {name: _version(name) for name in PACKAGES},
        "python": platform.python_version(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "accelerator": accelerator(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        },
        "commit": _commit(),
    }
