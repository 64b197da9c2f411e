"""The ZeroGPU entry file (space_app.py) and its direct runs (app.direct), on a CPU.

1. `python space_app.py` with the real `spaces` package installed (off ZeroGPU its decorator does nothing)
   starts, serves a run to gradio_client, and the run went through the direct path (its log line).
2. In-process with a stand-in `spaces` module that does what ZeroGPU does to a decorated generator: pickle
   the arguments and every yielded value, and stop the generator when the caller goes away. Each run makes
   exactly one decorated call, and a cancelled run's call is closed.
3. app.direct on its own: closing the frames generator cancels the engine run; `on_device` copies.
"""
from __future__ import annotations

import importlib.util
import os
import pickle
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import engine
from app.direct import FrameSource, device_models, on_device, run_frames
from app.model_cache import ModelCache
from app.settings import ROOT
from tests.app_server import env, free_port, save_png
from tests.test_app_domains import write_domain_models

ENTRY = ROOT / "space_app.py"
FAST = dict(steps=4, preview_every=1)


def _wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 180.0) -> None:
    import socket

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"space_app.py exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise AssertionError(f"nothing listens on port {port} after {timeout:g} s")


def _photo(tmp_path: Path) -> str:
    img = np.zeros((48, 48, 3), np.uint8)
    img[:, :24] = (200, 80, 40)
    return str(save_png(tmp_path / "photo.png", img))


# ------------------------------------------------------------------------------ 1. the real entry file

def test_entry_file_starts_and_serves_a_direct_run(tmp_path):
    pytest.importorskip("spaces")
    from gradio_client import Client, handle_file

    models_dir = write_domain_models(tmp_path / "models")
    port = free_port()
    environ = dict(os.environ, LATENTBRUSH_MODELS=str(models_dir), LATENTBRUSH_TMP=str(tmp_path / "lbtmp"),
                   GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1", SPACES_ZERO_GPU="",
                   LATENTBRUSH_ARGS=f"--port {port} --models cat=tinycat,face=tinyface --time-limit 60")
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(ENTRY)], cwd=ROOT, env=environ, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            _wait_port(port, proc)
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "dl"))
            out = client.predict(image=handle_file(_photo(tmp_path)), model="tinyface", **FAST,
                                 api_name="/colorize")
            assert str(out[4]).startswith("**Done**") and "step 4 / 4" in str(out[4]), out[4]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log_path.read_text(errors="replace")
    assert "ZeroGPU: False; runs on cpu" in text, text[-2000:]
    assert "direct run: tinyface on cpu" in text, text[-2000:]


# --------------------------------------------------------------- 2. a stand-in for ZeroGPU's decorator

class FakeSpaces(types.ModuleType):
    """`spaces.GPU(duration=...)` as ZeroGPU applies it to a generator: arguments and yielded values cross a
    process boundary (pickled here), and closing the caller's generator stops the task's."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.calls: list[dict] = []

    def GPU(self, task=None, *, duration=None):  # noqa: N802 - the real name
        def decorate(fn):
            def gpu_call(*args, **kwargs):
                call = {"duration": duration, "yielded": 0, "closed": False, "thread": threading.get_ident()}
                self.calls.append(call)
                args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))
                inner = fn(*args, **kwargs)
                try:
                    for value in inner:
                        call["yielded"] += 1
                        yield pickle.loads(pickle.dumps(value))
                except GeneratorExit:
                    call["closed"] = True
                    raise
                finally:
                    inner.close()
            return gpu_call
        return decorate(task) if task is not None else decorate


@pytest.fixture
def space_module(tmp_path, monkeypatch):
    models_dir = write_domain_models(tmp_path / "models")
    fake = FakeSpaces()
    port = free_port()
    monkeypatch.setitem(sys.modules, "spaces", fake)
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(models_dir))
    monkeypatch.setenv("LATENTBRUSH_TMP", str(tmp_path / "lbtmp"))
    monkeypatch.setenv("LATENTBRUSH_ARGS", f"--port {port} --models cat=tinycat,face=tinyface --time-limit 40")
    spec = importlib.util.spec_from_file_location("space_app_under_test", ENTRY)
    module = importlib.util.module_from_spec(spec)
    old_threads = torch.get_num_threads()
    spec.loader.exec_module(module)
    try:
        yield module, fake, port
    finally:
        torch.set_num_threads(old_threads)


def test_each_run_is_one_decorated_call_with_pickled_arguments_and_frames(space_module, tmp_path):
    from gradio_client import Client, handle_file

    module, fake, port = space_module
    assert module.settings.batching is False and module.RUN_DEVICE == "cpu" and module.GPU_SECONDS == 70
    with env(GRADIO_ANALYTICS_ENABLED="False"):
        module.demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=port,
                           **{k: v for k, v in module.launch_kwargs(module.settings).items()
                              if k not in ("server_name", "server_port")})
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False, download_files=str(tmp_path / "dl"))
            out = client.predict(image=handle_file(_photo(tmp_path)), model="tinycat", **FAST,
                                 api_name="/reconstruct")
            assert str(out[4]).startswith("**Done**"), out[4]
            assert len(fake.calls) == 1 and fake.calls[0]["duration"] == 70
            assert fake.calls[0]["yielded"] >= 4  # 4 frames (and maybe heartbeat Nones), all pickled
            assert module.handlers.runner.engines == {}  # no batched lane was ever made

            job = client.submit(image=handle_file(_photo(tmp_path)), model="tinycat", steps=100000,
                                preview_every=1, api_name="/colorize")
            end = time.monotonic() + 60
            while time.monotonic() < end and not (len(fake.calls) == 2 and fake.calls[1]["yielded"] >= 2):
                time.sleep(0.1)
            assert len(fake.calls) == 2 and fake.calls[1]["yielded"] >= 2
            job.cancel()
            end = time.monotonic() + 30
            while time.monotonic() < end and not fake.calls[1]["closed"]:
                time.sleep(0.1)
            assert fake.calls[1]["closed"], "a cancelled run must close its GPU call"
        finally:
            module.demo.close()


# ------------------------------------------------------------------------------------- 3. app.direct

@pytest.fixture
def tiny_cache(tiny_models_dir) -> ModelCache:
    return ModelCache(device="cpu")


def _request(model: engine.EngineModel, steps: int) -> engine.InversionRequest:
    target = np.full((model.resolution, model.resolution, 3), 120, np.uint8)
    cfg = engine.default_config("reconstruct").replace(steps=steps, max_steps=max(steps, 1000), preview_every=1,
                                                        perceptual="none")
    return engine.request_for_task("reconstruct", target, config=cfg)


def test_closing_the_frames_generator_cancels_the_run(tiny_cache):
    from tests.conftest import TINY_BUNDLED_NAME

    model = tiny_cache.get(TINY_BUNDLED_NAME)
    before = {t for t in threading.enumerate() if t.name == "inversion"}
    source = FrameSource(run_frames(tiny_cache, TINY_BUNDLED_NAME, _request(model, 10**7), heartbeat_s=0.2))
    frame = None
    while frame is None:
        frame = source.wait()
    assert frame.step >= 1 and not frame.done
    source.cancel()
    end = time.monotonic() + 30
    while time.monotonic() < end and {t for t in threading.enumerate() if t.name == "inversion"} - before:
        time.sleep(0.05)
    assert not {t for t in threading.enumerate() if t.name == "inversion"} - before, "the run kept going"


def test_a_short_run_ends_with_its_final_frame(tiny_cache):
    from tests.conftest import TINY_BUNDLED_NAME

    model = tiny_cache.get(TINY_BUNDLED_NAME)
    source = FrameSource(run_frames(tiny_cache, TINY_BUNDLED_NAME, _request(model, 3), heartbeat_s=0.2))
    frames = []
    with pytest.raises(StopIteration):
        while True:
            f = source.wait()
            if f is not None:
                frames.append(f)
    assert [f.step for f in frames] == [1, 2, 3] and frames[-1].done


def test_on_device_copies_and_leaves_the_original(tiny_cache):
    from tests.conftest import TINY_BUNDLED_NAME

    model = tiny_cache.get(TINY_BUNDLED_NAME)
    assert on_device(model, "cpu") is model
    moved = on_device(model, "meta")
    assert moved.device == torch.device("meta") and next(moved.G.parameters()).device.type == "meta"
    assert next(model.G.parameters()).device.type == "cpu" and model.device == torch.device("cpu")
    assert moved.G is not model.G and moved.w_std == model.w_std


def test_readme_gives_a_zerogpu_front_matter_that_matches_the_repository():
    """The README's ZeroGPU front matter names this entry file, the Gradio SDK and the pinned Gradio version."""
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", readme, re.S) if "app_file:" in b]
    assert len(blocks) == 1, "one ZeroGPU front matter example in the README"
    meta = dict(line.strip().split(":", 1) for line in blocks[0].splitlines() if ":" in line)
    meta = {k.strip(): v.strip().strip('"') for k, v in meta.items()}
    assert meta["sdk"] == "gradio" and (ROOT / meta["app_file"]).is_file() and meta["app_file"] != "app.py"
    pins = dict(line.split("==") for line in (ROOT / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert meta["sdk_version"] == pins["gradio"] and "spaces" in pins


def test_gpu_worker_models_never_wait_on_the_server_caches_locks(tiny_cache, tiny_models_dir):
    """ZeroGPU forks its worker at any moment: a lock another server thread held then stays held in the fork.
    The worker's models come from the server cache without its locks, or from disk."""
    from tests.conftest import TINY_BUNDLED_NAME

    model = tiny_cache.get(TINY_BUNDLED_NAME)
    gpu_models = device_models(tiny_cache, "cpu", maxsize=2)
    got: dict = {}

    def fetch() -> None:
        got["cached"] = gpu_models.get(TINY_BUNDLED_NAME)
        got["from_disk"] = gpu_models.get(str(tiny_models_dir / f"{TINY_BUNDLED_NAME}.json"))

    tiny_cache._lock.acquire()  # as if held by a server thread when the worker was forked
    try:
        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "the GPU-side cache waited on the server cache's lock"
    finally:
        tiny_cache._lock.release()
    assert got["cached"] is model  # same device: the server's own prepared model, no copy
    assert got["from_disk"] is not model and got["from_disk"].resolution == model.resolution
