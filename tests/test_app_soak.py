"""A short soak in-process: 120 one-step runs of the tiny model through gradio_client, visitors coming and
going. What the server retains afterwards -- the app's and Gradio's objects counted by type, Gradio's
per-session records, its lists of cached files, the files on disk -- must not grow with the last 100 runs (a
leak of one object or one file per run would show as +100). Counts and files, never time."""
from __future__ import annotations

import gc
import os
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from app.disk import Sweeper  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.app_server import TINY, env, free_port, one_torch_thread, running_app, save_png, two_tone, \
    write_tiny_models  # noqa: E402

WARM_UP = int(os.environ.get("LB_SOAK_WARM_UP", 20))
RUNS = int(os.environ.get("LB_SOAK_RUNS", 100))
CLIENTS = 2
NEW_VISITOR_EVERY = 10  # a fresh Client (session) runs once and goes away
WATCHED = ("app.", "gradio.", "engine.")


def retained_by_type() -> Counter:
    gc.collect()
    counts: Counter = Counter()
    for o in gc.get_objects():
        module = type(o).__dict__.get("__module__")
        if isinstance(module, str) and module.startswith(WATCHED):
            counts[f"{module}.{type(o).__qualname__}"] += 1
    return counts


def files_under(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def gradio_records(demo, handlers) -> dict[str, int]:
    q = demo._queue
    return {"sessions": len(demo.state_holder.session_data), "our sessions": len(handlers.open_sessions),
            "cached file names": sum(len(s) for s in demo.temp_file_sets),
            "events": len(q.event_ids_to_events), "session event ids": len(q.pending_event_ids_session),
            "session message queues": len(q.pending_messages_per_session), "iterators": len(demo.server_app.iterators),
            "streams": len(demo.pending_streams) + len(demo.pending_diff_streams)}


@pytest.fixture(scope="module")
def soak_app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("soak")
    models_dir = write_tiny_models(tmp / "models")
    # Both folders are bounded to 64 KiB: the bound, not luck, keeps them small. Gradio's own age-based deletion
    # (sweep_every_s) does not fire during the test; the sweeper is run by the test, as if time had passed.
    settings = Settings(temp_dir=tmp / "lb", port=free_port(), concurrency=2, max_steps=50, time_limit=60,
                        cache_max_mb=1 / 16, runs_max_mb=1 / 16, sweep_every_s=3600.0)
    with env(LATENTBRUSH_MODELS=str(models_dir), GRADIO_ANALYTICS_ENABLED="False",
             GRADIO_TEMP_DIR=str(tmp / "gradio")), one_torch_thread(), running_app(settings) as (url, demo, handlers):
        yield url, demo, handlers, settings, tmp


def _sweep(demo, settings, tmp: Path) -> None:
    Sweeper(settings, demo, cache_dir=tmp / "gradio").sweep_once(now=time.time() + settings.sweep_min_age_s + 1)


def _drive(url: str, photo: str, n: int, first_seed: int) -> None:
    """n one-step runs (a distinct seed each: distinct output files), outputs not downloaded."""
    clients = [Client(url, verbose=False, download_files=False) for _ in range(CLIENTS)]
    counter = iter(range(first_seed, first_seed + n))
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(c: Client) -> None:
        while True:
            with lock:
                k = next(counter, None)
            if k is None:
                return
            visitor = Client(url, verbose=False, download_files=False) if k % NEW_VISITOR_EVERY == 0 else c
            try:
                job = visitor.submit(image=handle_file(photo), align_face=False, model=TINY, steps=1,
                                     preview_every=1, seed=k, api_name="/reconstruct")
                for _ in job:
                    pass
                job.outputs()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
            finally:
                if visitor is not c:
                    visitor.close()  # the visitor goes away: its heartbeat stream closes, the server unloads it

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for c in clients:
        c.close()
    assert not errors, errors[:3]


def _settle(demo, handlers, *, timeout: float = 20.0) -> None:
    """Wait until the closed visitors' unload events have run (they run in the background after a disconnect)."""
    deadline = time.time() + timeout
    while time.time() < deadline and (len(demo.state_holder.session_data) > 0 or handlers.open_sessions):
        time.sleep(0.2)


def test_retained_objects_records_and_files_do_not_grow_with_runs(soak_app):
    url, demo, handlers, settings, tmp = soak_app
    photo = str(save_png(tmp / "photo.png", two_tone()))
    t0 = time.perf_counter()
    _drive(url, photo, WARM_UP, 0)
    _settle(demo, handlers)
    _sweep(demo, settings, tmp)
    print(f"warm-up: {WARM_UP} runs in {time.perf_counter() - t0:.1f} s")
    before_objects, before_records = retained_by_type(), gradio_records(demo, handlers)
    before_files = {"gradio cache": files_under(tmp / "gradio"), "run folders": files_under(settings.runs_dir)}

    t0 = time.perf_counter()
    _drive(url, photo, RUNS, WARM_UP)
    _settle(demo, handlers)
    _sweep(demo, settings, tmp)
    print(f"soak: {RUNS} runs in {time.perf_counter() - t0:.1f} s")
    after_objects, after_records = retained_by_type(), gradio_records(demo, handlers)
    after_files = {"gradio cache": files_under(tmp / "gradio"), "run folders": files_under(settings.runs_dir)}

    grown = {k: (before_objects[k], v) for k, v in after_objects.items() if v - before_objects[k] > RUNS // 10}
    assert not grown, f"objects that grew over {RUNS} runs (before, after): {grown}"
    for name, value in after_records.items():
        assert value <= before_records[name] + 2, (name, before_records[name], value)
    assert after_records["sessions"] <= CLIENTS  # the visitors who left were forgotten
    for name, value in after_files.items():
        assert value <= before_files[name] + 10, (name, before_files[name], value)
