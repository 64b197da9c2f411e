"""Hugging Face ZeroGPU entry point (Gradio SDK, README front matter `app_file: space_app.py`): the same UI as
`python -m app`, with each run's optimisation inside a `@spaces.GPU` call.

ZeroGPU attaches a GPU only while a `@spaces.GPU` function runs (in a forked worker), so runs cannot live on
the batched engine's background lanes: every run is made by its own request (`app.direct`, no batching).
The server process keeps its models on the CPU (it has no GPU there); the GPU worker copies a model to the
GPU the first time it runs it (`app.direct.device_models`). Interpolate's morph frames and Scribble's guide picture are drawn on the CPU.
Elsewhere (no `SPACES_ZERO_GPU`) the decorator does nothing and runs use `--device` in-process.

Flags: those of `python -m app`, from `$LATENTBRUSH_ARGS` (e.g. `--models cat=afhqcat,face=ffhq`).
`$LATENTBRUSH_GPU_SECONDS`: GPU time asked for one run (default: the run time limit + 30 s).
"""
from __future__ import annotations

import logging
import os
import sys
import threading

from app.memory import tune_allocator  # noqa: E402

tune_allocator()  # before any thread exists: a server's RSS otherwise creeps up with every run (app.memory)

try:  # ZeroGPU asks for `spaces` to be imported before anything initialises CUDA
    import spaces
except ImportError:
    if os.environ.get("SPACES_ZERO_GPU"):
        raise
    spaces = None

import torch  # noqa: E402

from app.__main__ import _preload, build_parser, env_args, settings_from_args  # noqa: E402
from app.direct import device_models, run_frames  # noqa: E402
from app.handlers import Handlers  # noqa: E402
from app.model_cache import ModelCache  # noqa: E402
from app.session import cleanup_stale_runs  # noqa: E402
from app.disk import Sweeper  # noqa: E402
from app.ui import build_demo, launch_kwargs, start_queue  # noqa: E402

log = logging.getLogger("space_app")
ZERO_GPU = os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")


def _gpu(duration: int):
    """`spaces.GPU(duration=...)`, or nothing where the `spaces` package is missing (local runs)."""
    if spaces is None:
        return lambda fn: fn
    return spaces.GPU(duration=duration)


args = build_parser().parse_args(env_args())
logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
try:
    # The server process of a ZeroGPU Space has no GPU: it loads models on the CPU; runs go to "cuda".
    settings = settings_from_args(args).replace(batching=False, device="cpu" if ZERO_GPU else args.device)
except ValueError as exc:
    sys.exit(f"error: {exc}")
RUN_DEVICE = "cuda" if ZERO_GPU else settings.device
if not ZERO_GPU and RUN_DEVICE.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("error: --device cuda but no CUDA GPU is available; use --device cpu")
GPU_SECONDS = int(os.environ.get("LATENTBRUSH_GPU_SECONDS", int(settings.time_limit) + 30))

os.environ.update(settings.gradio_env)
if settings.torch_threads:
    torch.set_num_threads(settings.torch_threads)
settings.runs_dir.mkdir(parents=True, exist_ok=True)
cleanup_stale_runs(settings)
server_models = ModelCache(device=settings.device, maxsize=settings.model_cache_size)
run_models = device_models(server_models, RUN_DEVICE, maxsize=settings.model_cache_size)


@_gpu(GPU_SECONDS)
def run_on_gpu(model_key: str, request):
    """One run, start to end, inside the GPU call (arguments and frames are pickled by ZeroGPU)."""
    yield from run_frames(run_models, model_key, request, heartbeat_s=settings.heartbeat_s)


handlers = Handlers(settings, cache=server_models, run_frames=run_on_gpu)
demo = build_demo(settings, handlers=handlers)
start_queue(demo, settings)

if __name__ == "__main__":
    Sweeper(settings, demo).start()
    if not args.no_preload:
        threading.Thread(target=_preload, args=(handlers,), daemon=True, name="preload").start()
    log.info("ZeroGPU: %s; runs on %s, up to %d s of GPU each", ZERO_GPU, RUN_DEVICE, GPU_SECONDS)
    demo.launch(**launch_kwargs(settings))
