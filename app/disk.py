"""Bound the disk a long-running server uses: `sweep(folder, ...)` deletes its oldest entries by age and by size.

An *entry* is one sub-folder of the swept folder (a run folder of ours, or one of Gradio's content-hash folders
in its cache) or a loose file; its age is that of its newest file. `Sweeper(settings, demo)` runs `sweep` on
Gradio's cache and our run folders every `settings.sweep_every_s` on a daemon thread (sleeping in between: it
costs nothing while idle) and forgets the deleted cache paths from Gradio's per-component `temp_files` sets.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

log = logging.getLogger(__name__)

MIB = 1024 * 1024


@dataclass(frozen=True)
class SweepResult:
    kept_bytes: int
    kept_entries: int
    deleted_bytes: int
    deleted_entries: int
    deleted_paths: tuple[str, ...]  # every file that was deleted (absolute)


def _entry(path: Path) -> tuple[float, int, list[str]] | None:
    """(newest mtime/ctime, total bytes, files) of a file or folder; None when it vanished meanwhile."""
    try:
        if path.is_symlink() or path.is_file():
            st = path.lstat()
            return max(st.st_mtime, st.st_ctime), st.st_size, [str(path)]
        newest, total, files = path.lstat().st_mtime, 0, []
        for root, _dirs, names in os.walk(path):
            for name in names:
                p = os.path.join(root, name)
                try:
                    st = os.lstat(p)
                except OSError:
                    continue
                newest = max(newest, st.st_mtime, st.st_ctime)
                total += st.st_size
                files.append(p)
        return newest, total, files
    except OSError:
        return None


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def sweep(folder: Path, *, max_age_s: float, max_bytes: float, min_age_s: float, now: float | None = None,
          keep: Iterable[str] = ()) -> SweepResult:
    """Delete `folder`'s entries older than `max_age_s`, then the oldest ones while the rest holds more than
    `max_bytes`, never one younger than `min_age_s` (it may belong to a run that is still streaming) nor one
    holding a path in `keep`."""
    now = time.time() if now is None else now
    keep = {str(Path(p).resolve()) for p in keep}
    entries = []
    try:
        children = list(folder.iterdir())
    except OSError:
        children = []
    for child in children:
        info = _entry(child)
        if info is not None:
            entries.append((info[0], info[1], info[2], child))
    entries.sort(key=lambda e: e[0])  # oldest first
    total = sum(e[1] for e in entries)
    deleted_bytes, deleted, paths = 0, 0, []
    for newest, size, files, path in entries:
        age = now - newest
        too_old = age > max_age_s
        too_big = total > max_bytes and age > min_age_s
        if not (too_old or too_big) or any(str(Path(f).resolve()) in keep for f in files):
            continue
        _delete(path)
        total -= size
        deleted_bytes += size
        deleted += 1
        paths.extend(files)
    if total > max_bytes:
        log.warning("%s holds %.0f MiB (bound %.0f MiB) in files younger than %.0f s", folder, total / MIB,
                    max_bytes / MIB, min_age_s)
    return SweepResult(kept_bytes=total, kept_entries=len(entries) - deleted, deleted_bytes=deleted_bytes,
                       deleted_entries=deleted, deleted_paths=tuple(paths))


def folder_bytes(folder: Path) -> int:
    """Total size of the files under `folder` (0 when it does not exist)."""
    info = _entry(folder) if folder.exists() else None
    return info[1] if info else 0


def gradio_cache_dir() -> Path:
    """Where Gradio caches served files: $GRADIO_TEMP_DIR, else <system temp>/gradio (gradio.utils)."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder())


class Sweeper:
    """Sweeps Gradio's cache and our run folders every `settings.sweep_every_s` seconds, on a daemon thread."""

    def __init__(self, settings: Any, demo: Any = None, *, cache_dir: Path | None = None) -> None:
        self.settings = settings
        self.demo = demo
        self.cache_dir = cache_dir or gradio_cache_dir()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _kept_by_gradio(self) -> set[str]:
        """Files Gradio must keep (components' default values and examples: `keep_in_cache`)."""
        keep: set[str] = set()
        for block in getattr(self.demo, "blocks", {}).values():
            keep.update(getattr(block, "keep_in_cache", ()) or ())
        return keep

    def _forget(self, paths: Iterable[str]) -> None:
        """Gradio remembers every file it copied into its cache in per-component sets that only its own
        `delete_cache` task prunes: drop the ones deleted here, or the sets grow with every distinct output."""
        gone = set(paths)
        for temp_set in list(getattr(self.demo, "temp_file_sets", ()) or ()):
            temp_set -= gone

    def sweep_once(self, *, now: float | None = None) -> tuple[SweepResult, SweepResult]:
        s = self.settings
        cache = sweep(self.cache_dir, max_age_s=s.files_max_age_s, max_bytes=s.cache_max_mb * MIB,
                      min_age_s=s.sweep_min_age_s, now=now, keep=self._kept_by_gradio())
        self._forget(cache.deleted_paths)
        runs = sweep(s.runs_dir, max_age_s=s.files_max_age_s, max_bytes=s.runs_max_mb * MIB,
                     min_age_s=s.sweep_min_age_s, now=now)
        if cache.deleted_entries or runs.deleted_entries:
            log.info("disk sweep: deleted %d cache entries (%.1f MiB) and %d run folders (%.1f MiB); kept %.1f + "
                     "%.1f MiB", cache.deleted_entries, cache.deleted_bytes / MIB, runs.deleted_entries,
                     runs.deleted_bytes / MIB, cache.kept_bytes / MIB, runs.kept_bytes / MIB)
        return cache, runs

    def start(self) -> "Sweeper":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="disk-sweeper", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.sweep_every_s):
            try:
                self.sweep_once()
            except Exception:  # noqa: BLE001 - a failed sweep must not end the sweeper
                log.warning("disk sweep failed", exc_info=True)
