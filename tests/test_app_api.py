"""The app served in-process with a tiny model, driven through gradio_client like an API user would:
every named endpoint streams frames in order, Stop/cancel closes the engine generator, errors arrive as
friendly messages, and two sessions never see each other's results."""
from __future__ import annotations

import gc
import logging
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from app.session import RunRecord, SavedFrame  # noqa: E402
from app.settings import Settings  # noqa: E402
from engine.runstate import RunState  # noqa: E402
from engine.state import load_state  # noqa: E402
from tests.app_server import (TINY, box_mask, env, free_port, layer_with, one_torch_thread, running_app,  # noqa: E402
                              save_png, two_tone, write_tiny_models)

ENDPOINTS = ("/scribble", "/inpaint", "/reconstruct", "/colorize", "/deblur", "/superres", "/interpolate")
FAST = dict(steps=12, preview_every=3, model=TINY)


class _EngineLog(logging.Handler):
    """Counts the engine loop's 'finished or cancelled' records (logged from its `finally`)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.finished = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "finished or cancelled" in record.getMessage():
            self.finished += 1


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    models_dir = write_tiny_models(tmp_path_factory.mktemp("models"))
    engine_log = _EngineLog()
    logger = logging.getLogger("engine")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(engine_log)
    settings = Settings(temp_dir=tmp_path_factory.mktemp("lbtmp"), port=free_port(), concurrency=2,
                        max_steps=5000, time_limit=60)
    try:
        with env(LATENTBRUSH_MODELS=str(models_dir), GRADIO_ANALYTICS_ENABLED="False"), one_torch_thread(), \
                running_app(settings) as (url, demo, handlers):
            yield url, handlers, engine_log
    finally:
        logger.removeHandler(engine_log)
        logger.setLevel(old_level)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("inputs")
    white = np.full((128, 128, 3), 255, np.uint8)
    strokes = box_mask((128, 128), 40, 20, 52, 110)
    comp = white.copy()
    comp[strokes] = (255, 140, 0)
    return {
        "photo": str(save_png(d / "photo.png", two_tone())),
        "white": str(save_png(d / "white.png", white)),
        "strokes": str(save_png(d / "strokes.png", layer_with(strokes, (255, 140, 0), 255))),
        "composite": str(save_png(d / "composite.png", comp)),
        # A plain black-and-white mask (white = fill), as API users have them; the browser sends RGBA layers.
        "hole": str(save_png(d / "hole.png", (box_mask((96, 128), 30, 50, 60, 80) * 255).astype(np.uint8))),
        "nothing": str(save_png(d / "nothing.png", np.zeros((96, 128, 4), np.uint8))),
        "red": str(save_png(d / "red.png", np.full((48, 48, 3), (230, 20, 20), np.uint8))),
        "blue": str(save_png(d / "blue.png", np.full((48, 48, 3), (20, 20, 230), np.uint8))),
    }


def _args(endpoint: str, f: dict[str, str]) -> dict:
    photo = handle_file(f["photo"])
    if endpoint == "/scribble":
        return dict(sketch={"background": handle_file(f["white"]), "layers": [handle_file(f["strokes"])],
                            "composite": handle_file(f["composite"])})
    if endpoint == "/inpaint":
        return dict(editor={"background": photo, "layers": [handle_file(f["hole"])], "composite": None})
    if endpoint == "/reconstruct":
        return dict(image=photo, align_face=False)
    if endpoint == "/deblur":
        return dict(image=photo, kernel_size=9, sigma=2.0, blur_first=True)
    if endpoint == "/superres":
        return dict(image=photo, factor=4)
    if endpoint == "/interpolate":
        return dict(image_a=photo, image_b=handle_file(f["red"]), earlier_a="", earlier_b="", frames=5)
    return dict(image=photo)


def _status(endpoint: str, out) -> str:
    return str(out[2] if endpoint == "/interpolate" else out[4])


def _client(url: str, tmp_path: Path) -> Client:
    return Client(url, verbose=False, download_files=str(tmp_path))


def test_named_endpoints_are_exactly_the_seven_tasks(app, tmp_path):
    url, _, _ = app
    api = _client(url, tmp_path).view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == set(ENDPOINTS)
    params = [p["parameter_name"] for p in api["named_endpoints"]["/inpaint"]["parameters"]]
    assert params[:3] == ["editor", "model", "latent_space"] and "session" not in params


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_streams_frames_in_order(app, files, tmp_path, endpoint):
    url, _, _ = app
    job = _client(url, tmp_path).submit(**_args(endpoint, files), **FAST, api_name=endpoint)
    seen = [_status(endpoint, out) for out in job]  # iterating the job yields each streamed output
    outs = job.outputs()
    statuses = [_status(endpoint, o) for o in outs]
    assert seen and statuses[-1].startswith("**Done**"), statuses
    running = [s for s in statuses if s.startswith(("**Running**", "**Reconstructing", "**Morphing**"))]
    assert len(running) >= 3, statuses
    final = outs[-1]
    if endpoint == "/interpolate":
        assert final[4] and Path(final[4]).suffix == ".gif" and len(final[5]) == 5
        return
    steps = [int(s.split("step ")[1].split(" /")[0]) for s in running]
    assert steps == sorted(steps) == [3, 6, 9]
    result = np.asarray(Image.open(final[1]))
    names = {Path(p).name for p in final[5]}
    assert {"result.png", "latent.pt", "progress.gif"} <= names
    if endpoint in ("/inpaint", "/colorize"):  # the edited photo at its own size (96x128), also in the downloads
        assert result.shape[:2] == (96, 128)
    else:
        assert result.shape[:2] == (256, 256)
    if endpoint != "/scribble":
        assert {"composite.png", "quality.csv"} <= names
        composite = np.asarray(Image.open(next(p for p in final[5] if Path(p).name == "composite.png")))
        assert composite.shape[:2] == (96, 128)
        assert "PSNR" in statuses[-1] and "SSIM" in statuses[-1]
    if endpoint == "/colorize":  # colorize keeps the photo's own luminance at the photo's own size
        from engine.photo import luma
        src = np.asarray(Image.open(files["photo"]).convert("RGB"))
        mse = float(((luma(composite[..., :3]) - luma(src)) ** 2).mean())
        assert 10 * np.log10(255 ** 2 / max(mse, 1e-10)) >= 40


def test_cancel_stops_the_run_and_runs_the_engine_finally(app, files, tmp_path):
    url, handlers, engine_log = app
    client = _client(url, tmp_path)
    before_finished, before_closed = engine_log.finished, handlers.runs_closed
    job = client.submit(image=handle_file(files["photo"]), align_face=False, model=TINY, steps=5000,
                        preview_every=2, api_name="/reconstruct")
    deadline = time.time() + 60
    while time.time() < deadline and not any(_status("/reconstruct", o).startswith("**Running**")
                                             for o in job.outputs()):
        time.sleep(0.05)
    assert handlers.active_runs >= 1
    t0 = time.time()
    assert job.cancel()
    while time.time() - t0 < 20 and (handlers.active_runs or engine_log.finished == before_finished):
        time.sleep(0.05)
    assert handlers.active_runs == 0, "the handler generator was not closed"
    assert engine_log.finished == before_finished + 1, "the engine's finally did not run"
    assert handlers.runs_closed == before_closed + 1
    assert _live(RunState) == 0, "the stopped run's optimisation state is still alive"
    assert not any(_status("/reconstruct", o).startswith("**Done**") for o in job.outputs())
    # The worker is free again: a short run finishes promptly.
    t1 = time.time()
    job2 = client.submit(image=handle_file(files["photo"]), align_face=False, **FAST, api_name="/reconstruct")
    assert _status("/reconstruct", job2.result()).startswith("**Done**")
    assert time.time() - t1 < 30


_CLIENT_PROCESS = """
import sys
from gradio_client import Client, handle_file
job = Client(sys.argv[1], verbose=False).submit(image=handle_file(sys.argv[2]), align_face=False, model=sys.argv[3],
                                                 steps=5000, preview_every=5000, api_name="/reconstruct")
for _ in job:
    pass
"""


def _live(*types: type) -> int:
    gc.collect()
    return sum(isinstance(o, types) for o in gc.get_objects())


def _tensor_bytes() -> int:
    """Bytes of every torch storage reachable from Python objects (model weights, caches, run state)."""
    gc.collect()
    storages = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # isinstance() on torch's deprecated module attributes
        for o in gc.get_objects():
            if isinstance(o, torch.Tensor):
                st = o.untyped_storage()
                storages[st.data_ptr()] = st.nbytes()
    return sum(storages.values())


def test_a_client_that_disconnects_frees_its_worker_and_memory(app, files, tmp_path):
    """Kill a client process mid-run (sockets close as when a tab closes): the run stops, the engine's state
    goes, and the visitor's session (frames, latents, files) is released: tensor memory is back where it was."""
    url, handlers, engine_log = app
    warm = _client(url, tmp_path).submit(image=handle_file(files["photo"]), align_face=False, **FAST,
                                         api_name="/reconstruct")
    assert _status("/reconstruct", warm.result()).startswith("**Done**")
    base_bytes, base_records = _tensor_bytes(), _live(RunRecord, SavedFrame, RunState)
    base_sessions, before_finished = handlers.open_sessions, engine_log.finished
    for _ in range(2):
        proc = subprocess.Popen([sys.executable, "-c", _CLIENT_PROCESS, url, files["photo"], TINY])
        try:
            deadline = time.time() + 60
            while time.time() < deadline and handlers.active_runs == 0:
                time.sleep(0.02)
            assert handlers.active_runs == 1, "the client's run did not start"
            time.sleep(0.5)
            assert _live(RunState) >= 1
            (visitor,) = handlers.open_sessions - base_sessions
        finally:
            proc.kill()
            proc.wait()
        # No frame is streamed (preview_every = steps): only the heartbeat (Settings.heartbeat_s, 0.5 s) can
        # notice the disconnect. Gradio's own fallback would take 10-15 s, so a 5 s bound tells them apart.
        deadline = time.time() + 5
        while time.time() < deadline and (handlers.active_runs or visitor in handlers.open_sessions):
            time.sleep(0.02)
        assert handlers.active_runs == 0, "the disconnected client's run is still going"
        assert visitor not in handlers.open_sessions, "the disconnected visitor's session was not released"
    deadline = time.time() + 5
    while time.time() < deadline and engine_log.finished < before_finished + 2:
        time.sleep(0.02)
    assert engine_log.finished == before_finished + 2
    assert _live(RunState) == 0, "a run's optimisation state outlived its client"
    assert _live(RunRecord, SavedFrame, RunState) <= base_records
    assert _tensor_bytes() <= base_bytes


@pytest.mark.parametrize("endpoint, kwargs, text", [
    ("/inpaint", "empty_mask", "Nothing is painted"),
    ("/colorize", "not_image", "not an image that can be read"),
    ("/reconstruct", "bad_model", "not a model file"),
])
def test_errors_reach_the_client_as_friendly_messages(app, files, tmp_path, endpoint, kwargs, text):
    url, _, _ = app
    args = _args(endpoint, files) | FAST
    if kwargs == "empty_mask":
        args["editor"] = {"background": handle_file(files["photo"]), "layers": [handle_file(files["nothing"])],
                          "composite": None}
    elif kwargs == "not_image":
        bogus = tmp_path / "notes.png"
        bogus.write_text("definitely not an image")
        args["image"] = handle_file(str(bogus))
    elif kwargs == "bad_model":
        args["model"] = "weights.txt"
    with pytest.raises(AppError) as ei:
        _client(url, tmp_path).submit(**args, api_name=endpoint).result()
    assert text in str(ei.value) and "Traceback" not in str(ei.value)


def test_tune_steps_parameter_turns_pivotal_tuning_on_and_off(app, files, tmp_path):
    """The photo endpoints' `tune_steps`: N tunes N steps after the search (the step counter runs on), 0 and None
    (left out: the model's default, none on the tiny model) do not; scribble has no such parameter."""
    url, _, _ = app
    client = _client(url, tmp_path)
    api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for endpoint in ENDPOINTS:
        names = [p["parameter_name"] for p in api[endpoint]["parameters"]]
        assert ("tune_steps" in names) == (endpoint not in ("/scribble", "/interpolate")), (endpoint, names)
    tuned = client.submit(**_args("/deblur", files), **FAST, tune_steps=6, api_name="/deblur").result()
    assert "step 18 / 18" in _status("/deblur", tuned)
    assert load_state(next(p for p in tuned[5] if Path(p).name == "latent.pt")).tuned
    for extra in ({"tune_steps": 0}, {}):
        plain = client.submit(**_args("/deblur", files), **FAST, **extra, api_name="/deblur").result()
        assert "step 12 / 12" in _status("/deblur", plain), extra
        assert not load_state(next(p for p in plain[5] if Path(p).name == "latent.pt")).tuned


def test_two_sessions_results_do_not_cross(app, files, tmp_path):
    url, _, _ = app
    results: dict[str, tuple] = {}

    def run(colour: str) -> None:
        client = _client(url, tmp_path / colour)
        results[colour] = client.submit(image=handle_file(files[colour]), model=TINY, steps=30, preview_every=3,
                                        api_name="/colorize").result()

    threads = [threading.Thread(target=run, args=(c,)) for c in ("red", "blue")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(results) == {"red", "blue"}
    for colour, channel in (("red", 0), ("blue", 2)):
        out = results[colour]
        inputs = [p for p in out[5] if Path(p).name == "input.png"]
        assert inputs, out[5]
        target = np.asarray(Image.open(inputs[0]).convert("RGB")).astype(int)
        assert target[..., channel].mean() > 200, (colour, target.mean(axis=(0, 1)))
        assert target[..., 2 - channel].mean() < 40
    red_dirs = {Path(p).parent for p in results["red"][5]}
    blue_dirs = {Path(p).parent for p in results["blue"][5]}
    assert red_dirs.isdisjoint(blue_dirs)


@pytest.mark.parametrize("changes", [
    # NaN/inf cannot travel in JSON (gradio_client refuses them): handler tests cover those values.
    dict(steps=0), dict(steps=-1), dict(steps="many"), dict(lr=-0.1), dict(l1=-1.0), dict(l2="x"),
    dict(model="no-such-model"), dict(model="/etc/passwd"), dict(model="../../outside.pkl"),
    dict(latent_space="q"), dict(preview_every=0), dict(tune_steps=-1), dict(tune_steps="many"),
], ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
def test_bad_api_parameters_get_a_clear_error_and_the_server_stays_up(app, files, tmp_path, changes):
    url, _, _ = app
    args = _args("/reconstruct", files) | FAST | changes
    with pytest.raises(AppError) as ei:
        _client(url, tmp_path).submit(**args, api_name="/reconstruct").result(timeout=60)
    assert "Traceback" not in str(ei.value) and len(str(ei.value)) > 10
    ok = _client(url, tmp_path).submit(**_args("/reconstruct", files), **FAST, api_name="/reconstruct")
    assert _status("/reconstruct", ok.result(timeout=120)).startswith("**Done**")

