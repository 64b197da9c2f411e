"""app.disk: the oldest entries go first, by age and by total size; young entries and kept files survive;
Gradio forgets the cache paths that were deleted.

An entry's age counts from its newest mtime/ctime (a ctime cannot be set back), so the tests create entries in
order, a few milliseconds apart, and sweep with `now` in the future instead of ageing files."""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.disk import Sweeper, folder_bytes, sweep
from app.settings import Settings


def _entries(folder: Path, n: int, *, size: int = 400, prefix: str = "e") -> list[Path]:
    """n sub-folders holding one file each, created oldest first."""
    files = []
    for i in range(n):
        d = folder / f"{prefix}{i}"
        d.mkdir(parents=True)
        (d / "f.png").write_bytes(b"x" * size)
        files.append(d / "f.png")
        time.sleep(0.01)
    return files


def test_entries_older_than_the_age_bound_are_deleted_and_younger_ones_kept(tmp_path):
    old = _entries(tmp_path, 2, prefix="old")
    time.sleep(0.2)
    new = _entries(tmp_path, 1, prefix="new")
    now = time.time() + 3600  # "old" entries are 3600.2+ s old, "new" one just under 3600.2
    r = sweep(tmp_path, max_age_s=3600.1, max_bytes=1e12, min_age_s=0, now=now)
    assert [p.exists() for p in old + new] == [False, False, True]
    assert r.deleted_entries == 2 and r.kept_entries == 1 and r.kept_bytes == 400
    assert set(r.deleted_paths) == {str(p) for p in old}


def test_size_bound_deletes_oldest_first_sparing_kept_paths_and_young_entries(tmp_path):
    a, b, c, d = _entries(tmp_path, 4)
    now = time.time() + 100
    r = sweep(tmp_path, max_age_s=1e9, max_bytes=900, min_age_s=10, now=now, keep=[str(a)])
    assert [p.exists() for p in (a, b, c, d)] == [True, False, False, True]  # a is kept; b, c were oldest
    assert r.kept_bytes == 800
    r = sweep(tmp_path, max_age_s=1e9, max_bytes=100, min_age_s=1000, now=now)  # all younger than min_age
    assert r.deleted_entries == 0 and a.exists() and d.exists()
    assert folder_bytes(tmp_path) == 800


def test_sweeper_bounds_both_folders_and_gradio_forgets_the_deleted_paths(tmp_path):
    settings = Settings(temp_dir=tmp_path / "lb", cache_max_mb=1 / 1024, runs_max_mb=1 / 1024,  # 1 KiB each
                        files_max_age_s=1e9)
    cache = tmp_path / "gradio"
    cached = _entries(cache, 3, size=600)
    runs = _entries(settings.runs_dir, 3, size=600)
    temp_set = {str(p) for p in cached}
    kept_example = cache / "example" / "cat.png"
    kept_example.parent.mkdir()
    kept_example.write_bytes(b"x" * 600)
    block = SimpleNamespace(keep_in_cache={str(kept_example)})
    demo = SimpleNamespace(blocks={1: block}, temp_file_sets=[temp_set])
    c, r = Sweeper(settings, demo, cache_dir=cache).sweep_once(now=time.time() + settings.sweep_min_age_s + 60)
    assert kept_example.exists()
    assert [p.exists() for p in cached] == [False, False, False]  # the example alone is 600 B of the 1 KiB
    assert [p.exists() for p in runs] == [False, False, True]
    assert r.kept_bytes <= 1024 and folder_bytes(settings.runs_dir) <= 1024
    assert temp_set == set()


def test_settings_refuse_a_non_positive_bound():
    with pytest.raises(ValueError, match="cache_max_mb"):
        Settings(cache_max_mb=0)
    with pytest.raises(ValueError, match="files_max_age_s"):
        Settings(files_max_age_s=-1)
