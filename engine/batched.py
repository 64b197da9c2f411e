"""Multi-run engine: concurrent runs on one model are stacked into one generator batch per step.

`BatchedEngine(model, workers=N).start(request)` returns a `RunHandle` (engine/handle.py) and `.submit(request)`
the same kind of Frame iterator as `engine.run`; each run keeps its own latent, target, mask, operators,
weights, learning rate and step count, and runs join and leave between steps. Cancelling a handle (or closing
the iterator) drops that run only, before the next step. L-BFGS runs (not batchable) run unbatched on a thread
of their own. Each of the N lanes is one worker thread that owns its runs' optimisation state.

A run with pivotal tuning (`config.tuning.steps > 0`) owns a copy of the synthesis weights in that stage, so it
cannot share a batch: after its batched latent search it leaves the lane and tunes on a thread of its own;
at most `tune_slots` tuning stages run at once (others wait for a slot, and still notice Stop while waiting).
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Iterator

import torch

from .handle import DONE, RunHandle, start_run
from .inversion import frame_due, make_frame
from .model import EngineModel
from .perceptual import build_extractor, requested_kind
from .runstate import RunState, adam_step, new_run, validate_request
from .tuning import tune
from .types import Frame, InversionRequest

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Job:
    request: InversionRequest
    handle: RunHandle = field(default_factory=RunHandle)
    state: RunState | None = None

    def put(self, item: object) -> None:
        self.handle.out.put(item)

    @property
    def cancelled(self) -> threading.Event:
        return self.handle.stop


class BatchedEngine:
    """Stacks concurrent runs of one model: `workers` lanes, each a thread stepping its runs as one batch
    (`max_batch` runs per batch). A new run joins the lane with the fewest runs.

    Several lanes pay on a CPU only with one torch thread each (`torch.set_num_threads(1)`): OpenMP teams
    started from more than one thread make every team wait far longer (measured: 29 -> 17 steps/s), while
    single-threaded lanes on separate cores do not disturb each other. On a GPU one lane is right.
    """

    def __init__(self, model: EngineModel, *, max_batch: int = 8, workers: int = 1,
                 tune_slots: int | None = None) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        tune_slots = workers if tune_slots is None else tune_slots
        if not isinstance(tune_slots, int) or tune_slots < 1:
            raise ValueError(f"tune_slots must be a positive integer, got {tune_slots!r}")
        self.model = model
        self._extractors = _ExtractorCache(model)
        self._tuner = _Tuner(model, slots=tune_slots)
        self._lanes = [_Lane(model, max_batch=max_batch, extractors=self._extractors, tuner=self._tuner,
                             name=f"batched-engine-{i}") for i in range(workers)]

    @property
    def active_runs(self) -> int:
        return sum(lane.active_runs for lane in self._lanes) + self._tuner.active_runs

    @property
    def tuning_runs(self) -> int:
        """Runs in (or waiting for) their tuning stage."""
        return self._tuner.active_runs

    def start(self, request: InversionRequest) -> RunHandle:
        """Queue a run; wait on the handle for its frames, cancel it to drop the run."""
        validate_request(self.model, request)
        if request.config.optimizer != "adam":
            return start_run(self.model, request)
        return min(self._lanes, key=lambda lane: lane.active_runs).start(request)

    def submit(self, request: InversionRequest) -> Iterator[Frame]:
        """`start(request)` as a blocking Frame iterator; closing it cancels the run."""
        return iter(self.start(request))

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()
        self._tuner.close()


class _Tuner:
    """Tuning stages of runs that left their lane: one thread per run, at most `slots` tuning at once."""

    def __init__(self, model: EngineModel, *, slots: int) -> None:
        self.model = model
        self._slots = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._jobs: set[_Job] = set()

    @property
    def active_runs(self) -> int:
        with self._lock:
            return len(self._jobs)

    def start(self, job: _Job, state: RunState) -> None:
        with self._lock:
            self._jobs.add(job)
        threading.Thread(target=self._run, args=(job, state), name="batched-engine-tuning", daemon=True).start()

    def _run(self, job: _Job, state: RunState) -> None:
        try:
            while not self._slots.acquire(timeout=0.1):  # a waiting run still notices Stop
                if job.cancelled.is_set():
                    return
            try:
                for frame in tune(self.model, state, stop=job.cancelled):
                    job.put(frame)
            finally:
                self._slots.release()
        except Exception as exc:  # the submitter sees the error
            job.put(exc)
        finally:
            state.last.clear()
            del state  # nothing of the run (its generator copy went with tune's frame) stays on this thread
            with self._lock:
                self._jobs.discard(job)
            job.put(DONE)

    def close(self) -> None:
        with self._lock:
            for job in self._jobs:
                job.cancelled.set()


class _ExtractorCache:
    """Perceptual feature networks by kind, built once per model and shared by the lanes."""

    def __init__(self, model: EngineModel) -> None:
        self.model = model
        self._lock = threading.Lock()
        self._built: dict[str, tuple] = {}

    def get(self, request: InversionRequest) -> tuple:
        kind = requested_kind(request.config)
        with self._lock:
            if kind not in self._built:
                self._built[kind] = build_extractor(kind, D=self.model.D, device=self.model.device)
            return self._built[kind]


class _Lane:
    """One worker thread that steps all its active runs, `max_batch` runs per batch."""

    def __init__(self, model: EngineModel, *, max_batch: int, extractors: _ExtractorCache, tuner: _Tuner,
                 name: str) -> None:
        self.model = model
        self._tuner = tuner
        self.max_batch = max_batch
        self.name = name
        self._extractors = extractors
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._active: list[_Job] = []
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def active_runs(self) -> int:
        with self._cond:
            return len(self._active) + len(self._pending)

    def start(self, request: InversionRequest) -> RunHandle:
        job = _Job(request)
        with self._cond:
            if self._closed:
                raise RuntimeError("engine is closed")
            self._pending.append(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify()
        return job.handle

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _admit(self, jobs: list[_Job]) -> None:
        for job in jobs:
            try:
                extractor, kind, messages = self._extractors.get(job.request)
                job.state = new_run(self.model, job.request, extractor, messages, kind)
                self._active.append(job)
            except Exception as exc:  # the submitter sees the error, the other runs go on
                job.put(exc)
                job.put(DONE)

    def _loop(self) -> None:
        while self._cycle():
            pass

    def _cycle(self) -> bool:
        """Admit new runs and step every active one once; False when the engine is closed. A method of its
        own so that nothing of a finished run stays referenced from the idle worker's locals."""
        with self._cond:
            while not self._closed and not self._pending and not self._active:
                self._cond.wait()
            if self._closed:
                for job in self._active + self._pending:
                    job.put(DONE)
                return False
            new, self._pending = self._pending, []
        self._admit(new)
        self._drop_finished()
        groups: dict[tuple, list[_Job]] = {}
        for job in self._active:
            groups.setdefault(job.state.batch_key(), []).append(job)
        for jobs in groups.values():
            for start in range(0, len(jobs), self.max_batch):
                self._step(jobs[start:start + self.max_batch])
        self._drop_finished()
        return True

    def _drop_finished(self) -> None:
        """Forget finished or cancelled runs (their tensors and optimiser moments go with them)."""
        keep, gone = [], []
        for j in self._active:
            (gone if j.cancelled.is_set() else keep).append(j)
        self._active = keep
        for j in gone:
            j.put(DONE)  # wakes a waiter of a cancelled run (after a finished run's last frame: ignored)
            if j.state is not None:
                j.state.moments.clear()
                j.state.last.clear()
                log.debug("inversion finished or cancelled at step %d (batched)", j.state.step)
                j.state = None

    def _hand_to_tuner(self, job: _Job) -> None:
        """The latent search is done: the run leaves this lane (and its batches) for its tuning stage."""
        state, job.state = job.state, None
        state.moments.clear()
        self._active = [j for j in self._active if j is not job]
        self._tuner.start(job, state)

    def _step(self, jobs: list[_Job]) -> None:
        states = [j.state for j in jobs]
        try:
            adam_step(self.model, states, states[0].extractor)
        except Exception as exc:
            for j in jobs:
                j.put(exc)
                j.cancelled.set()
            return
        for j in jobs:
            r = j.state
            if not frame_due(r):
                continue
            try:
                done = r.step == r.cfg.steps
                j.put(make_frame(self.model, r, final=done))
                if done and r.cfg.tuning.steps > 0 and not j.cancelled.is_set():
                    self._hand_to_tuner(j)
                elif done:
                    j.cancelled.set()
            except Exception as exc:
                j.put(exc)
                j.cancelled.set()
