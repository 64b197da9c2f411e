"""Direct runs (for ZeroGPU): each run's optimisation happens inside the request's own call to a function the
host may wrap (`spaces.GPU`), instead of on the server's background engine lanes.

ZeroGPU lends a GPU only while a `@spaces.GPU` function runs, in a forked worker process that gets its
arguments and hands back each yielded value by pickling. So the function given to
`Handlers(settings, run_frames=fn)` takes only picklable things, `(model_key, request)`, and yields picklable
things: `engine.Frame`s, or None while no frame arrived within the heartbeat (ZeroGPU looks at its stop flag
only between yielded values, so these keep Stop and disconnects prompt, as in the other modes). `run_frames(models, key, request, heartbeat_s=...)` is its body;
`FrameSource` makes its generator look like an `engine.RunHandle` to the handlers.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
from typing import Callable, Iterator

import torch

import engine

from .model_cache import ModelCache, load_and_prepare

log = logging.getLogger(__name__)

RunFrames = Callable[[str, engine.InversionRequest], Iterator["engine.Frame | None"]]
"""(model key, request) -> the run's frames, None between frames; closing it cancels the run."""


class FrameSource:
    """An `engine.RunHandle` look-alike over a `RunFrames` generator (used by `Handlers._stream`)."""

    def __init__(self, frames: Iterator[engine.Frame | None]) -> None:
        self._frames = frames

    def wait(self, timeout: float | None = None) -> engine.Frame | None:
        """The next frame, or None (the producer's own heartbeat stands in for `timeout`); StopIteration at
        the end; an engine error is raised here."""
        return next(self._frames)

    def cancel(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()


def on_device(model: engine.EngineModel, device: str | torch.device) -> engine.EngineModel:
    """`model` on `device` (itself when already there; otherwise a copy, the original is left as it is)."""
    device = torch.device(device)
    if model.device == device:
        return model
    moved = dataclasses.replace(model, G=copy.deepcopy(model.G).to(device),
                                D=copy.deepcopy(model.D).to(device) if model.D is not None else None,
                                w_avg=model.w_avg.to(device), device=device)
    return moved


def device_models(server_models: ModelCache, device: str, *, maxsize: int) -> ModelCache:
    """A cache of models on `device`: copied from what `server_models` holds, else loaded from disk.

    Meant for ZeroGPU's GPU worker, a process forked from the server at any moment: another server thread may
    have held one of `server_models`' locks then, and nothing would ever release it in the fork, so this only
    peeks at that cache (no lock) and never waits on it."""
    def load(key: str, dev: str) -> engine.EngineModel:
        held = server_models.peek(key)
        return on_device(held, dev) if held is not None else load_and_prepare(key, dev)
    return ModelCache(device=device, maxsize=maxsize, loader=load)


def run_frames(models: ModelCache, key: str, request: engine.InversionRequest, *,
               heartbeat_s: float) -> Iterator[engine.Frame | None]:
    """Run `request` on `models.get(key)` until it ends or the caller closes this generator (which cancels
    the run before its next step). The optimisation loop runs on a thread that lives only inside this call."""
    model = models.get(key)
    log.info("direct run: %s on %s", key, model.device)
    handle = engine.start_run(model, request)
    try:
        while True:
            try:
                frame = handle.wait(heartbeat_s)
            except StopIteration:
                return
            yield frame
    finally:
        handle.cancel()


__all__ = ["FrameSource", "RunFrames", "device_models", "on_device", "run_frames"]
