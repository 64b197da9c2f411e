"""Give heap memory freed by finished runs back to the operating system (Linux/glibc; elsewhere a no-op).

glibc keeps freed memory in per-thread arenas; with Gradio's worker threads a long-running server's RSS creeps
up run after run although nothing is leaked. `release_free_memory()` returns True when it trimmed.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import threading

log = logging.getLogger(__name__)
_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_free_memory() -> bool:
    fn = _malloc_trim()
    if fn is None:
        return False
    if not _lock.acquire(blocking=False):  # another thread is trimming right now: that is enough
        return False
    try:
        fn(0)
        return True
    finally:
        _lock.release()
