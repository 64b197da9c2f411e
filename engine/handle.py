"""A running inversion seen from outside: wait for its next Frame with a timeout, cancel it from any thread.

`RunHandle.wait(timeout)` returns the next `Frame`, or None when none arrived within `timeout` seconds (so a
caller, e.g. a web handler, can stay responsive while a run streams frames rarely); after the final frame it
raises StopIteration; an engine error is re-raised. `cancel()` makes the run stop at its next step (not its
next frame) and wakes any waiter. `start_run(model, request)` runs `engine.run` on a thread of its own;
`BatchedEngine.start` returns the same kind of handle for a run stacked with others.
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

from .inversion import run, validate_request
from .model import EngineModel
from .types import Frame, InversionRequest

DONE = object()
"""Put on a run's queue after its last frame (or when it was cancelled)."""


class RunHandle:
    """Frames of one run, delivered through a queue; `stop` is the event the producing loop checks every step."""

    def __init__(self, out: "queue.Queue[object] | None" = None, stop: threading.Event | None = None) -> None:
        self.out: "queue.Queue[object]" = out if out is not None else queue.Queue()
        self.stop = stop if stop is not None else threading.Event()
        self.finished = False

    def wait(self, timeout: float | None = None) -> Frame | None:
        if self.finished:
            raise StopIteration
        try:
            item = self.out.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is DONE:
            self.finished = True
            raise StopIteration
        if isinstance(item, BaseException):
            self.finished = True
            raise item
        return item

    def cancel(self) -> None:
        self.stop.set()

    def __iter__(self) -> Iterator[Frame]:
        """Blocking iteration over the frames; leaving the loop early cancels the run."""
        try:
            while True:
                try:
                    yield self.wait(None)
                except StopIteration:
                    return
        finally:
            self.cancel()


def start_run(model: EngineModel, request: InversionRequest) -> RunHandle:
    """Run `engine.run(model, request)` on its own daemon thread; frames arrive on the handle's queue."""
    validate_request(model, request)
    handle = RunHandle()

    def pump() -> None:
        try:
            for frame in run(model, request, stop=handle.stop):
                handle.out.put(frame)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter, who re-raises it
            handle.out.put(exc)
        finally:
            handle.out.put(DONE)

    threading.Thread(target=pump, name="inversion", daemon=True).start()
    return handle
