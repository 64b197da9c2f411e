"""Running a request: controls + inputs -> an engine run whose frames stream out as a task tab's outputs.

Each run is a generator; Gradio closes it when the user presses Stop or goes away, and its `finally` cancels
the engine run (`engine.RunHandle`), which stops before its next step and releases its optimiser state. Runs go
to one multi-run engine lane per loaded model (`BatchedEngine`), to `engine.start_run`, or, given `run_frames`,
directly (ZeroGPU, `app.direct`). Outputs follow `app.tabs` (`TAB_OUTPUTS`, ticks while between frames).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import gradio as gr
import numpy as np

import engine
from engine.batched import BatchedEngine
from engine.interpolate import lift
from engine.types import LATENT_SPACES
from models import CheckpointError

from . import views
from .controls import Controls, build_config, number, parse_controls, with_tuning
from .direct import FrameSource, RunFrames
from .memory import release_free_memory
from .model_cache import ModelCache, resolve
from .session import THUMB, RunRecord, SavedFrame, Session, as_session, new_run_folder
from .settings import Settings
from .tabs import as_user_error, tick, user_error, warn
from .uploads import UploadError, fit_to_square

log = logging.getLogger(__name__)

PrepareInputs = Callable[[engine.EngineModel, list], tuple]
"""(model, notices) -> (target, painted, extra request options[, framed photo])."""


def render_thumb(rgb: np.ndarray) -> np.ndarray:
    """Frames kept in the session are at most THUMB px (1024 px catalogue models would use ~3 MB per frame)."""
    return rgb if rgb.shape[0] <= THUMB else fit_to_square(rgb, THUMB)[0]


class Runner:
    """Runs every visitor's requests on this server: model lookup, engine lanes, live-run counters."""

    def __init__(self, settings: Settings, cache: ModelCache, *, run_frames: RunFrames | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.run_frames = run_frames  # given: every run is direct (ZeroGPU, app.direct), no engine lanes
        self._lock = threading.Lock()
        self.engines: dict[int, tuple[engine.EngineModel, BatchedEngine]] = {}
        self._active = 0
        self.runs_started = 0
        self.runs_closed = 0

    # ----------------------------------------------------------------------------- bookkeeping

    def _engine_for(self, model: engine.EngineModel) -> BatchedEngine:
        """One multi-run engine per loaded model: concurrent users' runs share one batch per step."""
        with self._lock:
            hit = self.engines.get(id(model))
            if hit is None or hit[0] is not model:
                hit = (model, BatchedEngine(model, max_batch=self.settings.max_batch,
                                            workers=self.settings.engine_workers))
                self.engines[id(model)] = hit
            return hit[1]

    @property
    def active_runs(self) -> int:
        with self._lock:
            return self._active

    def _enter(self) -> None:
        with self._lock:
            self._active += 1
            self.runs_started += 1

    def _exit(self) -> None:
        with self._lock:
            self._active -= 1
            self.runs_closed += 1

    def model(self, choice: str | None) -> tuple[str, engine.EngineModel]:
        """A model choice -> (cache key, loaded model); load failures become CheckpointErrors."""
        key = resolve(choice, self.settings)
        try:
            return key, self.cache.get(key)
        except (CheckpointError, UploadError, engine.EngineError):
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            log.warning("could not load model %s", key, exc_info=True)
            raise CheckpointError(f"{Path(key).name} could not be loaded ({type(exc).__name__}: {exc})") from exc

    def loading_notice(self, key: str) -> str | None:
        """What to show while `key` loads (None when it is in the cache already)."""
        if key in self.cache:
            return None
        return f"Loading model {Path(key).name}…"

    def config(self, tab: str, model: engine.EngineModel, c: Controls, notices: list[str]) -> engine.InversionConfig:
        """The engine config of a run of `tab` on `model` (its task overrides applied; steps capped at the
        server's limit)."""
        arch = getattr(model.G, "arch", model.config.arch)
        return build_config(tab, arch, c, max_steps=self.settings.max_steps, notices=notices,
                            overrides=model.config.task_defaults)

    # ----------------------------------------------------------------------------- streaming core

    def stream(self, record: RunRecord, model: engine.EngineModel, request: engine.InversionRequest,
               session: Session, *, started: float, deadline: float, step_offset: int = 0,
               total: int | None = None) -> Iterator[tuple]:
        """Run the engine; yield 8-tuples (TAB_OUTPUTS) per frame, then the final one with downloads."""
        size = self.settings.display_size
        total = total or step_offset + request.config.total_steps
        if self.run_frames is not None:
            handle = FrameSource(self.run_frames(record.model_key, request))
        else:
            handle = (self._engine_for(model).start(request) if self.settings.batching
                      else engine.start_run(model, request))
        best: SavedFrame | None = None
        final: SavedFrame | None = None
        # The engine's full-resolution image of the best and the final frame: only the downloads use it (result.png,
        # composite.png), so a 1024 px model's composite is not built from a 256 px thumbnail.
        best_full: np.ndarray | None = None
        final_full: np.ndarray | None = None
        first_frame_s: float | None = None
        steps_per_s = 0.0
        timed_out = False
        seen_messages: set[str] = set()
        self._enter()
        try:
            yield (views.input_shown(record), None, None, None,
                   views.status(record, None, headline=f"**Starting** {record.task} with {record.model_name}…"),
                   None, gr.update(interactive=False), session)
            while True:
                if time.perf_counter() > deadline:
                    timed_out = True
                    break
                try:
                    frame = handle.wait(self.settings.heartbeat_s)
                except StopIteration:
                    break
                if frame is None:
                    # No new frame yet: hand control back to Gradio anyway, so that Stop or a disconnect
                    # closes this generator now rather than at the next frame (which may be far off).
                    yield tick(session)
                    continue
                if first_frame_s is None:
                    first_frame_s = time.perf_counter() - started
                steps_per_s = frame.steps_per_s
                saved = SavedFrame(step=step_offset + frame.step, latent=frame.latent, space=frame.latent_space,
                                   noises=frame.noises, image=render_thumb(frame.image),
                                   degraded=render_thumb(frame.degraded), losses=dict(frame.losses),
                                   psnr=frame.psnr, ssim=frame.ssim)
                saved.stage, saved.weight_deltas = frame.stage, frame.weight_deltas
                record.keep(saved, limit=self.settings.frames_kept)
                for m in frame.messages:
                    if m not in seen_messages:
                        seen_messages.add(m)
                        record.notices.append(m)
                        warn(m)
                if best is None or saved.losses.get("total", math.inf) <= best.losses.get("total", math.inf):
                    best, best_full = saved, frame.image
                if frame.done:
                    final, final_full = saved, frame.image
                    break
                live = views.Live(saved, total, started, first_frame_s, frame.steps_per_s)
                result, second = views.shown(record, saved.image, saved.degraded, size=size)
                yield (views.input_shown(record), result, second, views.loss_shown(record),
                       views.status(record, live, headline="**Running**"), None, gr.skip(), session)
        finally:
            handle.cancel()  # the run stops before its next step (also when Gradio closes us: Stop / disconnect)
            self._exit()
            release_free_memory()
        if final is None:
            if best is None:
                raise user_error(f"The time limit of {self.settings.time_limit:g} s was reached before the first "
                                 "result; try fewer steps, a smaller model or a smaller 'preview every'.")
            final, final_full = best, best_full
            if timed_out:
                msg = (f"Stopped at the time limit of {self.settings.time_limit:g} s after step "
                       f"{record.frames[-1].step} of {total}: showing the best result so far (step {final.step}).")
                record.notices.append(msg)
                warn(msg)
        yield self._finish(record, final, session, started=started, first_frame_s=first_frame_s, total=total,
                           headline="**Done**" if not timed_out else "**Stopped at the time limit**",
                           steps_per_s=steps_per_s, full=final_full)

    def _finish(self, record: RunRecord, final: SavedFrame, session: Session, *, started: float,
                first_frame_s: float | None, total: int, headline: str, steps_per_s: float = 0.0,
                full: np.ndarray | None = None) -> tuple:
        views.conclude(record, final, session, full=full)
        elapsed = time.perf_counter() - started
        live = views.Live(final, total, started, first_frame_s, steps_per_s)
        result, second = views.shown(record, final.image, final.degraded, size=self.settings.display_size)
        status = views.status(record, live, headline=f"{headline} in {elapsed:.1f} s")
        return (views.input_shown(record), result, second, views.loss_shown(record), status, record.files,
                views.rewind_slider(record, final), session)

    # ------------------------------------------------------------------------------ task runs

    def run_task(self, task: str, model_choice: str | None, controls: tuple, session: Session | None,
                 prepare_inputs: PrepareInputs, *, tune_steps: Any = None) -> Iterator[tuple]:
        """Common body of the six task handlers. `prepare_inputs(model, notices)` -> (target, painted, extra).
        `tune_steps`: this run's pivotal tuning steps (the API's parameter); None = the session's Settings slider,
        else the model's default."""
        started = time.perf_counter()
        session = as_session(session)
        notices: list[str] = []
        try:
            c = parse_controls(controls)
            key = resolve(model_choice, self.settings)
            loading = self.loading_notice(key)
            if loading:
                yield (None, None, None, None, f"**Loading** — {loading}", None, gr.skip(), session)
            key, model = self.model(key)
            cfg = self.config(task, model, c, notices)
            tuning = session.tune_steps if tune_steps is None else {
                task: number("Tuning steps", tune_steps, integer=True, minimum=0)}
            cfg = with_tuning(task, cfg, tuning, max_steps=self.settings.max_steps, notices=notices)
            target, painted, extra, *framed = prepare_inputs(model, notices)
            request = engine.request_for_task(task, target, painted=painted, config=cfg, **extra)
        except Exception as exc:
            raise as_user_error(exc, task) from None
        run_id, folder = new_run_folder(session, task, settings=self.settings)
        record = RunRecord(run_id=run_id, task=task, model_key=key, model_name=model.config.name,
                           request=request, input_view=np.zeros((1, 1, 3), np.uint8), folder=folder,
                           notices=notices, photo=framed[0] if framed else None)
        try:
            record.input_view = views.input_view(task, request, size=self.settings.display_size)
        except Exception as exc:
            raise as_user_error(exc, task) from None
        session.runs[task] = record
        try:
            yield from self.stream(record, model, request, session, started=started,
                                   deadline=started + self.settings.time_limit)
        except gr.Error:
            raise
        except Exception as exc:
            raise as_user_error(exc, task) from None

    def continue_run(self, task: str, from_step: Any, rewind: Any, model_choice: str | None, controls: tuple,
                     session: Session) -> Iterator[tuple]:
        """Continue the tab's latest run from its end (rewind=False) or from saved step `from_step`."""
        started = time.perf_counter()
        record = session.runs.get(task)
        if record is None or not record.frames:
            raise user_error("There is no run to continue yet in this tab: press Run first.")
        notices: list[str] = []
        try:
            c = parse_controls(controls)
            try:
                chosen = resolve(model_choice, self.settings)
            except UploadError:
                chosen = None
            if chosen != record.model_key:
                notices.append(f"Continuing with {record.model_name}, the model this run was made with.")
            key, model = self.model(record.model_key)
            cfg = self.config(task, model, c, notices)
            if rewind:
                k = number("Rewind to step", from_step, integer=True, minimum=0)
                start = record.frame_at(int(k))
            else:
                start = record.frames[-1]
            if start.stage == "tuning":
                pivot = [f for f in record.frames if f.stage == "latent" and f.step <= start.step]
                start = pivot[-1] if pivot else record.frames[0]
                notices.append(f"Tuned weights are not kept between runs: the latent search goes on from step "
                               f"{start.step} (the pivot, before tuning); tuning runs again after it if its "
                               "slider is above 0.")
            cfg = with_tuning(task, cfg, session.tune_steps, max_steps=self.settings.max_steps, notices=notices)
            latent, space = start.latent, start.space
            order = list(LATENT_SPACES)
            if order.index(cfg.latent_space) > order.index(space):
                latent = lift(model, latent, space, cfg.latent_space)
            elif order.index(cfg.latent_space) < order.index(space) and cfg.latent_space == "z":
                notices.append(f"A {space} latent cannot go back to z; continuing in {space}.")
                cfg = cfg.replace(latent_space=space)
            # Continuing refines a result: no latent-noise kick at the start (it would undo progress).
            cfg = cfg.replace(init="given", initial_noise_factor=0.0)
            noises = start.noises if cfg.optimize_noise else None
            if cfg.optimize_noise and start.noises is None:
                notices.append(f"The noise maps of step {start.step} were not kept (memory): the noise starts afresh.")
            request = dataclasses.replace(record.request, config=cfg, init_latent=latent, init_noises=noises)
        except Exception as exc:
            raise as_user_error(exc, f"{task} continuation") from None
        run_id, folder = new_run_folder(session, task, settings=self.settings)
        kept = [f for f in record.frames if f.step <= start.step]
        new = RunRecord(run_id=run_id, task=task, model_key=key, model_name=record.model_name, request=request,
                        input_view=record.input_view, folder=folder, frames=kept,
                        notices=notices + [f"Continued from step {start.step}."], photo=record.photo)
        session.runs[task] = new
        try:
            yield from self.stream(new, model, request, session, started=started,
                                   deadline=started + self.settings.time_limit, step_offset=start.step)
        except gr.Error:
            raise
        except Exception as exc:
            raise as_user_error(exc, f"{task} continuation") from None
