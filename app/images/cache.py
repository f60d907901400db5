"""The local read-through cache of remote images (in the data dir): kept under its size, the least recently
used files dropped first."""

from __future__ import annotations

import os
import threading
from pathlib import Path

_lock = threading.Lock()
_cache_bytes: dict[Path, int] = {}  # per cache dir, the bytes it holds (counted once, then kept up to date)


def _cached(folder: Path) -> list[tuple[str, int, float]]:
    """The cache's finished files as (path, bytes, mtime). Other threads write beside it (a dot-named
    temporary file, renamed when whole), so an entry may vanish between listing and stat: it is skipped."""
    out = []
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        try:
            if entry.is_file():
                stat = entry.stat()
                out.append((entry.path, stat.st_size, stat.st_mtime))
        except FileNotFoundError:
            continue
    return out


def account(folder: Path, added: int, limit: int) -> None:
    """Keep the cache under ``limit`` bytes, dropping the least recently used files first."""
    with _lock:
        if folder not in _cache_bytes:
            _cache_bytes[folder] = sum(size for _, size, _ in _cached(folder))
        else:
            _cache_bytes[folder] += added
        if _cache_bytes[folder] <= limit:
            return
        entries = sorted(_cached(folder), key=lambda e: e[2])
        total = sum(size for _, size, _ in entries)
        for path, size, _ in entries:
            if total <= limit * 0.9:  # some room, so that the next miss does not evict again
                break
            Path(path).unlink(missing_ok=True)
            total -= size
        _cache_bytes[folder] = total
