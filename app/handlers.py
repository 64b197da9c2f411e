"""Event handlers: validate inputs (through `app.uploads`), build an engine request, stream the engine's
frames as UI updates. No image maths here (see `app.render`) and no optimisation (see `engine`).

`Handlers(settings)` holds what is shared by every visitor: the settings and the model cache. Everything
about one visitor lives in a `Session` object kept in a `gr.State` (never in module globals), passed in and
returned by every handler. Each task handler is a generator; Gradio closes it when the user presses Stop or
goes away, and its `finally` cancels the engine run (`engine.RunHandle`), which stops before its next step
and releases its optimiser state. A visitor who disconnects has their Session released at once (`on_unload`).

Outputs of a task tab, in order (`TAB_OUTPUTS`): input view (what the result must match), result, second
view (what the loss compares; for inpainting the raw generator output), loss plot, status (Markdown),
downloads (list of files), rewind slider, session. Reconstruct adds a before/after alignment view.
While a run is between frames, a *tick* (every output skipped but the session; see `is_tick`) is yielded every
`Settings.heartbeat_s`, so that Stop and disconnects take effect at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import html
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
import torch

import engine
from engine.batched import BatchedEngine
from engine.export import loss_plot, strip, write_gif, write_mp4, write_png, write_quality_csv
from engine.photo import to_frame
from engine.interpolate import common_space, interpolation_frames, lift, render as render_latent
from engine.state import EditState, save_state
from engine.tasks import strokes_from_image
from engine.types import LATENT_SPACES
from models import CheckpointError

from . import render
from .controls import (CONTROL_FIELDS, Controls, all_defaults, build_config, control_defaults, number, parse_controls,
                       with_tuning)
from .direct import FrameSource, RunFrames
from .memory import release_free_memory
from .model_cache import ModelCache, describe, resolve
from .photo_inputs import FramedPhoto, crop_box, frame_photo, outline, wants_alignment
from .session import THUMB, RunRecord, SavedFrame, Session, SessionRegistry, new_run_folder
from .settings import Settings
from .tabs import TABS, as_user_error, is_tick, tick, user_error, warn
from .uploads import UploadError, check_mask_coverage, fit_to_square, load_image, load_mask

log = logging.getLogger(__name__)

INPAINT_BRUSH = (255, 0, 140)
INPAINT_BRUSH_OPACITY = 0.6
CANVAS = 512
MAX_FRAMES_INTERP = 120


# ------------------------------------------------------------------------------------------- handlers

@dataclass
class _Live:
    """What one streamed update shows."""

    frame: SavedFrame
    total: int
    started: float
    first_frame_s: float | None
    steps_per_s: float


class Handlers:
    """All event handlers of the app; one instance per server (shared state: settings, model cache)."""

    def __init__(self, settings: Settings, *, cache: ModelCache | None = None,
                 run_frames: RunFrames | None = None) -> None:
        self.settings = settings
        self.run_frames = run_frames  # given: every run is direct (ZeroGPU, app.direct), no engine lanes
        self.cache = cache or ModelCache(device=settings.device, maxsize=settings.model_cache_size)
        self._lock = threading.Lock()
        self._engines: dict[int, tuple[engine.EngineModel, BatchedEngine]] = {}
        self._active = 0
        self.runs_started = 0
        self.runs_closed = 0
        self.sessions = SessionRegistry()

    # ----------------------------------------------------------------------------- bookkeeping

    def _engine_for(self, model: engine.EngineModel) -> BatchedEngine:
        """One multi-run engine per loaded model: concurrent users' runs share one batch per step."""
        with self._lock:
            hit = self._engines.get(id(model))
            if hit is None or hit[0] is not model:
                hit = (model, BatchedEngine(model, max_batch=self.settings.max_batch,
                                            workers=self.settings.engine_workers))
                self._engines[id(model)] = hit
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

    def _session(self, session: Session | None, request: gr.Request | None = None) -> Session:
        return self.sessions.adopt(session, request)

    @property
    def open_sessions(self) -> frozenset[str]:
        """Session hashes of the visitors whose runs are held (released on disconnect)."""
        return self.sessions.open

    def on_unload(self, request: gr.Request) -> None:
        """The visitor disconnected (tab closed, page reloaded, API client gone): free their runs now.

        Gradio keeps a closed session's gr.State for an hour in case the same session reconnects, which a
        reloaded page never does; without this, every finished visitor would hold frames and files that long.
        """
        self.sessions.release(request)

    def _new_folder(self, session: Session, task: str) -> tuple[str, Path]:
        return new_run_folder(session, task, settings=self.settings)

    def _model(self, choice: str | None) -> tuple[str, engine.EngineModel]:
        key = resolve(choice, self.settings)
        try:
            return key, self.cache.get(key)
        except (CheckpointError, UploadError, engine.EngineError):
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            log.warning("could not load model %s", key, exc_info=True)
            raise CheckpointError(f"{Path(key).name} could not be loaded ({type(exc).__name__}: {exc})") from exc

    def _config(self, tab: str, arch: str, c: Controls, notices: list[str]) -> engine.InversionConfig:
        return build_config(tab, arch, c, max_steps=self.settings.max_steps, notices=notices)

    def _loading_notice(self, key: str) -> str | None:
        if key in self.cache:
            return None
        return f"Loading model {Path(key).name}…"

    # ------------------------------------------------------------------------------ input parsing

    def _photo(self, source: Any, notices: list[str], *, what: str = "photo") -> np.ndarray:
        if source is None:
            raise UploadError(f"No {what} was provided. Please upload an image (or click an example) first.")
        loaded = load_image(source, max_pixels=self.settings.max_upload_pixels,
                            resize_to_max_side=self.settings.max_upload_side)
        notices.extend(f"Your {what}: {n}." for n in loaded.notices)
        return loaded.rgb

    def _framed(self, rgb: np.ndarray, m: engine.EngineModel, notices: list[str], crop: tuple, *,
                painted: np.ndarray | None = None, align: bool = False) -> FramedPhoto:
        """The photo framed for the model: face aligned on face models (or when asked), else the crop sliders'."""
        align = align or wants_alignment(m.config.name, m.config.domain)
        return frame_photo(rgb, m.resolution, align=align, crop=crop_box(rgb.shape[:2], *crop), notices=notices,
                           warn=warn, painted=painted)

    @staticmethod
    def _layers(editor: dict) -> list[Any]:
        return [layer for layer in (editor.get("layers") or []) if layer is not None]

    @staticmethod
    def _painted(layers: list[Any], size: tuple[int, int], *, alpha_only: bool) -> np.ndarray:
        """Union of what was painted on the editor's layers, at `size` = (H, W).

        alpha_only: a pixel is painted when its alpha > 0 (scribble strokes). Otherwise `load_mask`'s rules:
        alpha > 0 for layers with transparency (what the browser sends), white = painted for an opaque
        black-and-white mask picture (what API callers usually have).
        """
        painted = np.zeros(size, dtype=bool)
        for layer in layers:
            arr = layer if isinstance(layer, np.ndarray) else None
            if alpha_only and arr is not None and arr.ndim == 3 and arr.shape[2] == 4:
                painted |= load_mask(arr[..., 3] > 0, size=size)
            else:
                painted |= load_mask(layer, size=size)
        return painted

    def _editor(self, editor: Any, what: str) -> dict:
        if editor is None:
            return {}
        if not isinstance(editor, dict):
            raise UploadError(f"The {what} could not be read (expected an image editor value with 'background', "
                              "'layers' and 'composite'). Please draw again.")
        return editor

    def _scribble_input(self, editor: Any, res: int, notices: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Sketch -> (stroke colours, stroke mask) at `res`. Strokes = painted layers' alpha; colours = composite."""
        editor = self._editor(editor, "sketch")
        layers = self._layers(editor)
        base = editor.get("composite") if editor.get("composite") is not None else editor.get("background")
        if layers:
            first = np.asarray(layers[0]) if isinstance(layers[0], np.ndarray) else None
            if base is not None:
                colours = self._photo(base, notices, what="sketch")
            elif first is not None and first.ndim == 3 and first.shape[2] == 4:
                colours = render.flatten_over_white([np.asarray(x) for x in layers], first.shape[:2])
            else:
                raise UploadError("The sketch has layers but no picture to take the colours from. Please draw again.")
            strokes = self._painted(layers, colours.shape[:2], alpha_only=True)
        elif base is not None:  # a plain picture (API callers, examples): every non-white pixel is a stroke
            colours = self._photo(base, notices, what="sketch")
            strokes = strokes_from_image(colours)
        else:
            raise UploadError("Nothing is drawn yet. Pick a colour, draw a few strokes, then press Run.")
        if not strokes.any():
            raise UploadError("Nothing is drawn yet. Pick a colour, draw a few strokes, then press Run.")
        colours, strokes = render.center_square(colours), render.center_square(strokes)
        if not strokes.any():
            raise UploadError("All strokes are outside the central square that is used. Please draw in the middle.")
        return render.shrink_strokes(colours, strokes, res)

    def _inpaint_input(self, editor: Any, m: engine.EngineModel, notices: list[str], crop: tuple
                       ) -> tuple[np.ndarray, np.ndarray, FramedPhoto]:
        """Editor -> (target, hole at the model's resolution, framed photo). Photo = background (never the composite,
        which shows the paint); the hole is warped into the model's frame like the photo."""
        editor = self._editor(editor, "photo and mask")
        photo = self._photo(editor.get("background"), notices)
        hole = self._painted(self._layers(editor), photo.shape[:2], alpha_only=False)
        check_mask_coverage(hole, what="fill in")
        framed = self._framed(photo, m, notices, crop, painted=hole)
        hole_frame = framed.painted_in_frame()
        if not hole_frame.any():
            raise UploadError("The painted region is outside the square the model sees. Please paint on the face "
                              "(or move the crop square over the region).")
        if framed.painted_outside():
            notices.append("Part of the painted region lies outside the square the model sees; that part was ignored.")
        return framed.target(), hole_frame, framed

    # --------------------------------------------------------------------------------- views

    def _enlarge(self, rgb: np.ndarray) -> np.ndarray:
        return render.enlarge(rgb, self.settings.display_size)

    def _input_view(self, task: str, request: engine.InversionRequest) -> np.ndarray:
        size = self.settings.display_size
        if task == "inpaint":
            return render.with_outline(request.target, ~request.known, size)
        if task == "scribble":
            return self._enlarge(render.only_known(request.target, request.known))
        return self._enlarge(render_projected(request))

    @staticmethod
    def _pub(folder: Path, rgb: np.ndarray | None) -> str | None:
        """Write a display image once, named by its content, and return its path.

        Handing Gradio numpy arrays makes it rewrite the same cache file whenever an identical image is
        yielded again (e.g. the unchanged input view on every frame), which races with browsers/clients still
        downloading it (truncated responses). Paths are copied into Gradio's cache atomically, once.
        """
        if rgb is None:
            return None
        data = render.encode_png(rgb)
        path = folder / "views" / f"{hashlib.sha1(data).hexdigest()[:24]}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.{uuid.uuid4().hex[:8]}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return str(path)

    def _shown(self, record: RunRecord, image: np.ndarray, degraded: np.ndarray) -> tuple[str, str]:
        """(result, second view) as display files."""
        result, second = self._views(record, image, degraded)
        return self._pub(record.folder, result), self._pub(record.folder, second)

    def _input_shown(self, record: RunRecord) -> str:
        return self._pub(record.folder, record.input_view)

    def _loss_shown(self, record: RunRecord) -> str:
        return self._pub(record.folder, self._loss_plot(record))

    def _views(self, record: RunRecord, image: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(result, second view) for display."""
        req = record.request
        if record.photo is not None and record.task in ("inpaint", "colorize"):
            return record.photo.preview(record.task, image), self._enlarge(image)  # your photo, edited
        if record.photo is not None and record.task == "reconstruct":  # what the loss compares is the result itself
            return self._enlarge(image), record.photo.preview(record.task, image)
        if record.task == "inpaint":
            small = image if image.shape[0] == req.target.shape[0] else fit_to_square(image, req.target.shape[0])[0]
            return self._enlarge(render.paste(req.target, small, req.known)), self._enlarge(image)
        if record.task == "scribble":
            return self._enlarge(image), render.with_outline(image, req.known, self.settings.display_size)
        return self._enlarge(image), self._enlarge(degraded)

    @staticmethod
    def _status(record: RunRecord, live: _Live | None, *, headline: str) -> str:
        parts = [headline]
        if live is not None:
            f = live.frame
            bits = [f"step {f.step} / {live.total}" + (" (tuning the generator)" if f.stage == "tuning" else "")]
            if live.steps_per_s > 0:
                bits.append(f"{live.steps_per_s:.1f} steps/s")
            if live.first_frame_s is not None:
                bits.append(f"first frame after {live.first_frame_s:.1f} s")
            bits.append(f"{time.perf_counter() - live.started:.1f} s elapsed")
            bits.append(f"loss {f.losses.get('total', float('nan')):.4g}")
            if math.isfinite(f.psnr):
                bits.append(f"PSNR {f.psnr:.2f} dB · SSIM {f.ssim:.3f}")
            parts.append(" · ".join(bits))
        text = " — ".join(parts)
        if record.notices:
            text += "\n\n" + "\n".join(f"- {html.escape(n, quote=False)}" for n in dict.fromkeys(record.notices))
        return text

    # ----------------------------------------------------------------------------- streaming core

    def _stream(self, record: RunRecord, model: engine.EngineModel, request: engine.InversionRequest,
                session: Session, *, started: float, deadline: float, step_offset: int = 0,
                total: int | None = None) -> Iterator[tuple]:
        """Run the engine; yield 8-tuples (TAB_OUTPUTS) per frame, then the final one with downloads."""
        total = total or step_offset + request.config.total_steps
        if self.run_frames is not None:
            handle = FrameSource(self.run_frames(record.model_key, request))
        else:
            handle = (self._engine_for(model).start(request) if self.settings.batching
                      else engine.start_run(model, request))
        best: SavedFrame | None = None
        final: SavedFrame | None = None
        first_frame_s: float | None = None
        steps_per_s = 0.0
        timed_out = False
        seen_messages: set[str] = set()
        self._enter()
        try:
            yield (self._input_shown(record), None, None, None,
                   self._status(record, None, headline=f"**Starting** {record.task} with {record.model_name}…"),
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
                    best = saved
                if frame.done:
                    final = saved
                    break
                live = _Live(saved, total, started, first_frame_s, frame.steps_per_s)
                result, second = self._shown(record, saved.image, saved.degraded)
                yield (self._input_shown(record), result, second, self._loss_shown(record),
                       self._status(record, live, headline="**Running**"), None, gr.skip(), session)
        finally:
            handle.cancel()  # the run stops before its next step (also when Gradio closes us: Stop / disconnect)
            self._exit()
            release_free_memory()
        if final is None:
            if best is None:
                raise user_error(f"The time limit of {self.settings.time_limit:g} s was reached before the first "
                                 "result; try fewer steps, a smaller model or a smaller 'preview every'.")
            final = best
            if timed_out:
                msg = (f"Stopped at the time limit of {self.settings.time_limit:g} s after step "
                       f"{record.frames[-1].step} of {total}: showing the best result so far (step {final.step}).")
                record.notices.append(msg)
                warn(msg)
        yield self._finish(record, final, session, started=started, first_frame_s=first_frame_s, total=total,
                           headline="**Done**" if not timed_out else "**Stopped at the time limit**",
                           steps_per_s=steps_per_s)

    def _loss_plot(self, record: RunRecord) -> np.ndarray:
        return loss_plot([(f.step, f.losses) for f in record.frames])

    def _finish(self, record: RunRecord, final: SavedFrame, session: Session, *, started: float,
                first_frame_s: float | None, total: int, headline: str, steps_per_s: float = 0.0) -> tuple:
        record.finished, record.final = True, final
        record.files = self._write_files(record, final)
        session.remember(record, final)
        elapsed = time.perf_counter() - started
        live = _Live(final, total, started, first_frame_s, steps_per_s)
        result, second = self._shown(record, final.image, final.degraded)
        status = self._status(record, live, headline=f"{headline} in {elapsed:.1f} s")
        steps = [f.step for f in record.frames]
        slider = gr.update(minimum=min(steps), maximum=max(max(steps), min(steps) + 1), value=final.step,
                           step=1, interactive=True)
        return (self._input_shown(record), result, second, self._loss_shown(record), status, record.files, slider,
                session)

    def _write_files(self, record: RunRecord, final: SavedFrame) -> list[str]:
        d = record.folder
        req = record.request
        files = [write_png(d / "result.png", final.image)]
        if record.task == "inpaint":
            small = final.image if final.image.shape[0] == req.target.shape[0] else \
                fit_to_square(final.image, req.target.shape[0])[0]
            files.append(write_png(d / "result_pasted.png", render.paste(req.target, small, req.known)))
        files.append(write_png(d / "input.png", req.target))
        if record.photo is not None:  # the result put back into the photo, at the photo's own size
            files.append(write_png(d / "composite.png", record.photo.composite(record.task, final.image)))
        files.append(write_quality_csv(d / "quality.csv", [(f.step, f.losses.get("total", math.nan), f.psnr, f.ssim)
                                                           for f in record.frames if f.step <= final.step]))
        files.append(save_state(d / "latent.pt", EditState(latent=final.latent, latent_space=final.space,
                                                            step=final.step, model_name=record.model_key,
                                                            config=req.config, noises=final.noises,
                                                            weight_deltas=final.weight_deltas)))
        frames = [f.image for f in record.frames if f.step <= final.step] or [final.image]
        try:
            files.append(write_gif(d / "progress.gif", frames, fps=8, size=THUMB))
        except Exception:  # noqa: BLE001 - an animation failing must not lose the result
            log.warning("could not write progress.gif", exc_info=True)
        files.append(write_png(d / "loss.png", self._loss_plot(record)))
        return [str(p) for p in files]

    # ------------------------------------------------------------------------------ task runner

    def _run_task(self, task: str, model_choice: str | None, controls: tuple, session: Session | None,
                  prepare_inputs) -> Iterator[tuple]:
        """Common body of the six task handlers. `prepare_inputs(model, notices)` -> (target, painted, extra)."""
        started = time.perf_counter()
        session = self._session(session)
        notices: list[str] = []
        try:
            c = parse_controls(controls)
            key = resolve(model_choice, self.settings)
            loading = self._loading_notice(key)
            if loading:
                yield (None, None, None, None, f"**Loading** — {loading}", None, gr.skip(), session)
            key, model = self._model(key)
            arch = getattr(model.G, "arch", model.config.arch)
            cfg = self._config(task, arch, c, notices)
            cfg = self._with_tuning(task, cfg, session, notices)
            target, painted, extra, *framed = prepare_inputs(model, notices)
            request = engine.request_for_task(task, target, painted=painted, config=cfg, **extra)
        except Exception as exc:
            raise as_user_error(exc, task) from None
        run_id, folder = self._new_folder(session, task)
        record = RunRecord(run_id=run_id, task=task, model_key=key, model_name=model.config.name,
                           request=request, input_view=np.zeros((1, 1, 3), np.uint8), folder=folder,
                           notices=notices, photo=framed[0] if framed else None)
        try:
            record.input_view = self._input_view(task, request)
        except Exception as exc:
            raise as_user_error(exc, task) from None
        session.runs[task] = record
        try:
            yield from self._stream(record, model, request, session, started=started,
                                    deadline=started + self.settings.time_limit)
        except gr.Error:
            raise
        except Exception as exc:
            raise as_user_error(exc, task) from None

    # ---------------------------------------------------------------------------- public: tasks

    def scribble(self, sketch, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist,
                 optimize_noise, optimizer, seed, preview_every, session=None,
                 request: gr.Request | None = None):
        """Scribble to image: only the drawn pixels constrain the result (their colours are the target)."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def inputs(m, notices):
            colours, strokes = self._scribble_input(sketch, m.resolution, notices)
            return colours, strokes, {}
        yield from self._run_task("scribble", model, controls, self._session(session, request), inputs)

    def inpaint(self, editor, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist,
                optimize_noise, optimizer, seed, preview_every, session=None,
                request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None):
        """Inpaint: the painted region is filled in, the rest of the photo is matched. crop_*: the square the
        model sees on non-face models (centre x, centre y, side; percent)."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def inputs(m, notices):
            target, hole, framed = self._inpaint_input(editor, m, notices, (crop_x, crop_y, crop_size))
            return target, hole, {}, framed
        yield from self._run_task("inpaint", model, controls, self._session(session, request), inputs)

    def reconstruct(self, image, align_face, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net,
                    latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
                    request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None):
        """Reconstruct a photo (face-aligned on face models, or when asked). Adds a before/after alignment output."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)
        aligned: list = [None]

        def inputs(m, notices):
            rgb = self._photo(image, notices)
            framed = self._framed(rgb, m, notices, (crop_x, crop_y, crop_size), align=bool(align_face))
            if framed.placement.kind == "face":
                aligned[0] = (fit_to_square(rgb, THUMB)[0], to_frame(rgb, framed.placement.resized(THUMB)))
            return framed.target(), None, {}, framed
        shown = None
        for out in self._run_task("reconstruct", model, controls, self._session(session, request), inputs):
            if aligned[0] is not None and shown is None and isinstance(out[7], Session) \
                    and "reconstruct" in out[7].runs:
                folder = out[7].runs["reconstruct"].folder
                shown = tuple(self._pub(folder, img) for img in aligned[0])
            yield out + (shown,)

    def colorize(self, image, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist,
                 optimize_noise, optimizer, seed, preview_every, session=None,
                 request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None):
        """Colorize: only the brightness of the photo is matched; the model supplies the colours (the result keeps
        the photo's own brightness at its own size)."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def inputs(m, notices):
            framed = self._framed(self._photo(image, notices), m, notices, (crop_x, crop_y, crop_size))
            return framed.target(), None, {}, framed
        yield from self._run_task("colorize", model, controls, self._session(session, request), inputs)

    def deblur(self, image, kernel_size, sigma, blur_first, model, latent_space, steps, lr, l1, l2, perceptual,
               perceptual_net, latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
               request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None):
        """Deblur: find a sharp image whose blurred version matches the photo."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def inputs(m, notices):
            k = number("Kernel size", kernel_size, integer=True, minimum=1)
            if k % 2 == 0:
                raise user_error(f"The blur kernel size must be odd (3, 5, 7, …), got {k}.")
            s = number("Sigma", sigma, strictly_positive=True)
            framed = self._framed(self._photo(image, notices), m, notices, (crop_x, crop_y, crop_size))
            if blur_first:
                notices.append(f"Demo: your photo was blurred first (kernel {k}, sigma {s:g}).")
            return framed.target(), None, dict(kernel_size=int(k), sigma=float(s), degrade_input=bool(blur_first)), \
                framed
        yield from self._run_task("deblur", model, controls, self._session(session, request), inputs)

    def superres(self, image, factor, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net,
                 latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
                 request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None):
        """Super-resolve: find an image whose `factor`-times smaller version matches the photo."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def inputs(m, notices):
            f = number("Factor", factor, integer=True, minimum=1)
            if m.resolution % f:
                raise user_error(f"Factor {f} does not divide the model's {m.resolution} px resolution; "
                                 "use 2, 4 or 8.")
            framed = self._framed(self._photo(image, notices), m, notices, (crop_x, crop_y, crop_size))
            return framed.target(), None, dict(factor=int(f)), framed
        yield from self._run_task("superres", model, controls, self._session(session, request), inputs)

    # ------------------------------------------------------------------------ continue / rewind

    def continue_run(self, task, from_step, rewind, model_choice, latent_space, steps, lr, l1, l2, perceptual,
                     perceptual_net, latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
                     request: gr.Request | None = None):
        """Continue the tab's latest run from its end (rewind=False) or from saved step `from_step`."""
        started = time.perf_counter()
        session = self._session(session, request)
        record = session.runs.get(task)
        if record is None or not record.frames:
            raise user_error("There is no run to continue yet in this tab: press Run first.")
        notices: list[str] = []
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)
        try:
            c = parse_controls(controls)
            try:
                chosen = resolve(model_choice, self.settings)
            except UploadError:
                chosen = None
            if chosen != record.model_key:
                notices.append(f"Continuing with {record.model_name}, the model this run was made with.")
            key, model = self._model(record.model_key)
            arch = getattr(model.G, "arch", model.config.arch)
            cfg = self._config(task, arch, c, notices)
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
            cfg = self._with_tuning(task, cfg, session, notices)
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
        run_id, folder = self._new_folder(session, task)
        kept = [f for f in record.frames if f.step <= start.step]
        new = RunRecord(run_id=run_id, task=task, model_key=key, model_name=record.model_name, request=request,
                        input_view=record.input_view, folder=folder, frames=kept,
                        notices=notices + [f"Continued from step {start.step}."], photo=record.photo)
        session.runs[task] = new
        try:
            yield from self._stream(new, model, request, session, started=started,
                                    deadline=started + self.settings.time_limit, step_offset=start.step)
        except gr.Error:
            raise
        except Exception as exc:
            raise as_user_error(exc, f"{task} continuation") from None

    def set_tuning(self, tab, steps, session=None):
        """The Settings slider 'Pivotal tuning steps' of a tab (0 = off) -> the session."""
        session = self._session(session)
        try:
            session.tune_steps[tab] = max(0, int(steps or 0))
        except (TypeError, ValueError):
            session.tune_steps[tab] = 0
        return session

    def _with_tuning(self, task: str, cfg: engine.InversionConfig, session: Session,
                     notices: list[str]) -> engine.InversionConfig:
        return with_tuning(task, cfg, session.tune_steps, max_steps=self.settings.max_steps, notices=notices)

    def rewind_preview(self, task, step, session=None):
        """Show the saved frame at `step` (no computation). Returns (result, second view, status)."""
        record = session.runs.get(task) if isinstance(session, Session) else None
        if record is None or not record.frames:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            k = int(step)
        except (TypeError, ValueError):
            return gr.skip(), gr.skip(), gr.skip()
        f = record.frame_at(k)
        result, second = self._shown(record, f.image, f.degraded)
        return result, second, (f"**Step {f.step}** (saved frame) — loss {f.losses.get('total', float('nan')):.4g}. "
                                "Press *Continue from this step* to optimise on from here.")

    def after_stop(self, task, session=None):
        """After Stop: downloads and rewind slider from the frames streamed so far. (status, files, slider)."""
        record = session.runs.get(task) if isinstance(session, Session) else None
        if record is None or not record.frames or record.finished:
            return gr.skip(), gr.skip(), gr.skip()
        final = record.frames[-1]
        record.notices.append(f"Stopped by you at step {final.step}; the downloads hold that step's result.")
        record.finished, record.final = True, final
        record.files = self._write_files(record, final)
        session.remember(record, final)
        steps = [f.step for f in record.frames]
        slider = gr.update(minimum=min(steps), maximum=max(max(steps), min(steps) + 1), value=final.step,
                           step=1, interactive=True)
        return self._status(record, None, headline="**Stopped**"), record.files, slider

    # --------------------------------------------------------------------------------- interpolate

    def interpolate(self, image_a, image_b, earlier_a, earlier_b, frames, model, latent_space, steps, lr, l1, l2,
                    perceptual, perceptual_net, latent_dist, optimize_noise, optimizer, seed, preview_every,
                    session=None,
                    request: gr.Request | None = None):
        """Morph between two images (reconstructed first) or two earlier results of this session.

        Outputs: preview, loss plot, status, MP4 video, GIF, frames gallery, downloads, session.
        """
        started = time.perf_counter()
        session = self._session(session, request)
        notices: list[str] = []
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)
        try:
            n = number("Frames", frames, integer=True, minimum=2)
            if n > MAX_FRAMES_INTERP:
                raise user_error(f"At most {MAX_FRAMES_INTERP} frames, please (you asked for {n}).")
            c = parse_controls(controls)
            key = resolve(model, self.settings)
            sides = []
            for name, image, earlier in (("A", image_a, earlier_a), ("B", image_b, earlier_b)):
                entry = next((e for e in session.library if e.key == earlier), None) if earlier else None
                if earlier and entry is None:
                    raise user_error(f"Earlier result {name} is no longer available; pick another one.")
                if entry is not None and entry.model_key != key:
                    raise user_error(f"Earlier result {name} was made with another model ({Path(entry.model_key).name})"
                                     f": choose that model, or give an image instead.")
                if entry is None and image is None:
                    raise user_error(f"Give image {name}, or pick an earlier result for it.")
                sides.append((name, image, entry))
            loading = self._loading_notice(key)
            if loading:
                yield (None, None, f"**Loading** — {loading}", None, None, None, None, session)
            key, m = self._model(key)
            arch = getattr(m.G, "arch", m.config.arch)
            cfg = self._config("interpolate", arch, c, notices)
            if any(session.tune_steps.values()):
                notices.append("Interpolation morphs with the shared, untuned generator: pivotal tuning only "
                               "applies to the single-image tabs.")
            photos = {name: self._framed(self._photo(image, notices, what=f"image {name}"), m, notices,
                                         (None, None, None)).target()  # faces aligned on face models
                      for name, image, entry in sides if entry is None}
        except Exception as exc:
            raise as_user_error(exc, "interpolation") from None

        run_id, folder = self._new_folder(session, "interpolate")
        latents = []
        last_loss = None
        to_reconstruct = [s for s in sides if s[2] is None]
        for i, (name, _, entry) in enumerate(sides):
            if entry is not None:
                latents.append((entry.latent, entry.space, entry.image))
                continue
            share = (to_reconstruct.index(sides[i]) + 1) / (len(to_reconstruct) + 0.25)
            try:
                request = engine.request_for_task("reconstruct", photos[name], config=cfg)
            except Exception as exc:
                raise as_user_error(exc, "interpolation") from None
            sub = folder / f"reconstruct_{name.lower()}"
            sub.mkdir(parents=True, exist_ok=True)
            rec = RunRecord(run_id=f"{run_id}{name}", task="reconstruct", model_key=key, model_name=m.config.name,
                            request=request, input_view=self._enlarge(photos[name]), folder=sub,
                            notices=notices)
            try:
                for out in self._stream(rec, m, request, session, started=started,
                                        deadline=started + self.settings.time_limit * share):
                    if is_tick(out):
                        yield tick(session)  # the interpolate tab's outputs are 8 too, the session last
                        continue
                    status = out[4].replace("**Running**", f"**Reconstructing image {name}**", 1).replace(
                        "**Done**", f"**Image {name} reconstructed**", 1)
                    last_loss = out[3] or last_loss
                    yield (out[1] if out[1] is not None else out[0], last_loss, status, None, None, None, None,
                           session)
            except gr.Error:
                raise
            except Exception as exc:
                raise as_user_error(exc, "interpolation") from None
            latents.append((rec.final.latent, rec.final.space, rec.final.image))
        try:
            (la, sa, _), (lb, sb, _) = latents
            space = common_space(sa, sb)
            la, lb = lift(m, la, sa, space), lift(m, lb, sb, space)
            images: list[np.ndarray] = []
            gallery: list[tuple[str, str]] = []
            for i, img in enumerate(interpolation_frames(m, la, lb, space=space, num_frames=int(n))):
                images.append(img)
                shown = self._pub(folder, self._enlarge(img))
                gallery.append((shown, f"{i + 1}/{n}"))
                if i % max(1, int(n) // 8) == 0 or i == n - 1:
                    yield (shown, last_loss, f"**Morphing** — frame {i + 1} / {n} in {space}", None, None,
                           None, None, session)
            files = [write_gif(folder / "interpolation.gif", images, fps=10, size=THUMB)]
            video = None
            try:
                video = write_mp4(folder / "interpolation.mp4", images, fps=10, size=THUMB)
                files.append(video)
            except Exception:  # noqa: BLE001 - the GIF is enough when ffmpeg is missing
                log.warning("could not write interpolation.mp4", exc_info=True)
                notices.append("MP4 export is not available here; the GIF has the same frames.")
            files.append(write_png(folder / "frames.png", strip(images, max_frames=min(int(n), 16))))
            for tag, (lat, sp, _) in (("a", latents[0]), ("b", latents[1])):
                files.append(save_state(folder / f"latent_{tag}.pt", EditState(
                    latent=lat, latent_space=sp, step=0, model_name=key, config=cfg)))
        except gr.Error:
            raise
        except Exception as exc:
            raise as_user_error(exc, "interpolation") from None
        status = f"**Done** — {n} frames in {space} in {time.perf_counter() - started:.1f} s"
        if notices:
            status += "\n\n" + "\n".join(f"- {html.escape(x, quote=False)}" for x in dict.fromkeys(notices))
        yield (gallery[len(gallery) // 2][0], last_loss, status, str(video) if video else None,
               str(files[0]), gallery, [str(p) for p in files], session)

    def library_choices(self, session=None):
        """Dropdown updates (A, B) listing this session's earlier results."""
        lib = session.library if isinstance(session, Session) else []
        choices = [("(none: use the image)", "")] + [(e.label, e.key) for e in reversed(lib)]
        return gr.update(choices=choices), gr.update(choices=choices)

    # ----------------------------------------------------------------------------------- helpers

    def reset_defaults(self, tab: str, model_choice: str | None) -> tuple:
        """The tab's default controls for the chosen model's architecture."""
        arch = describe(model_choice, self.settings).arch
        return dataclasses.astuple(control_defaults(tab, arch))

    def all_defaults(self, model_choice: str | None) -> tuple:
        """Defaults of every tab (TABS order, CONTROL_FIELDS each) for the model's architecture."""
        return all_defaults(describe(model_choice, self.settings).arch)

    def model_changed(self, model_choice: str | None, previous_arch: str | None) -> tuple:
        """(arch, *every tab's controls): reset to the new defaults only when the architecture changed
        (StyleGAN2 <-> DCGAN), so switching between two StyleGAN2 models keeps the user's settings."""
        arch = describe(model_choice, self.settings).arch
        n = len(TABS) * len(CONTROL_FIELDS)
        if arch == previous_arch:
            return (arch,) + (gr.skip(),) * n
        return (arch,) + self.all_defaults(model_choice)

    def crop_view(self, source, crop_x, crop_y, crop_size, model_choice):
        """The photo with the square the model will see drawn on it (the aligned face on face models)."""
        if isinstance(source, dict):
            source = source.get("background")
        if source is None:
            return None
        try:
            rgb = load_image(source, max_pixels=self.settings.max_upload_pixels,
                             resize_to_max_side=self.settings.max_upload_side).rgb
        except UploadError:
            return None
        info = describe(model_choice, self.settings)
        align = wants_alignment(Path(str(model_choice or "")).name, info.domain)
        framed = frame_photo(rgb, info.resolution or 64, align=align, notices=[], warn=lambda _: None,
                             crop=crop_box(rgb.shape[:2], crop_x, crop_y, crop_size))
        return outline(rgb, framed.placement)

    def model_info(self, model_choice: str | None) -> str:
        if not model_choice:
            return "No model available: put a model in assets/models/ or start with `--model PATH`."
        info = describe(model_choice, self.settings)
        res = f"{info.resolution} px" if info.resolution else "resolution known after loading"
        return (f"**{html.escape(Path(str(model_choice)).name)}** — {info.arch}, {res}, "
                f"{html.escape(info.domain)}. Licence: {html.escape(info.licence)}.")

    def guide(self, show: bool, model_choice: str | None):
        """A blank sketch canvas, with the model's average picture faintly underneath when `show`."""
        blank_layer = np.zeros((CANVAS, CANVAS, 4), np.uint8)
        white = np.full((CANVAS, CANVAS, 3), 255, np.uint8)
        if not show:
            return {"background": white, "layers": [blank_layer], "composite": white}
        try:
            _, m = self._model(model_choice)
            mean = render_latent(m, m.w_avg.detach().cpu().reshape(1, -1), "w")
        except Exception as exc:
            raise as_user_error(exc, "guide") from None
        faint = render.faint(fit_to_square(mean, CANVAS)[0] if mean.shape[0] > CANVAS else
                             render.enlarge(mean, CANVAS))
        return {"background": faint, "layers": [blank_layer], "composite": faint}

    def scribble_example(self, sketch):
        """An example stroke picture -> an editable stroke layer on a white canvas."""
        editor = sketch if isinstance(sketch, dict) else {"background": sketch}
        base = editor.get("composite") if editor.get("composite") is not None else editor.get("background")
        if base is None:
            return gr.skip()
        try:
            rgb = load_image(base).rgb
        except UploadError as exc:
            raise user_error(str(exc)) from None
        rgb = fit_to_square(rgb, CANVAS)[0] if rgb.shape[:2] != (CANVAS, CANVAS) else rgb
        strokes = strokes_from_image(rgb)
        white = np.full_like(rgb, 255)
        layer = render.to_rgba(rgb, strokes)
        return {"background": white, "layers": [layer], "composite": render.paste(white, rgb, ~strokes)}

    def inpaint_example(self, photo, mask):
        """An example (photo, mask: white = fill) -> editor value with the mask as an editable painted layer."""
        try:
            rgb = load_image(photo).rgb
            hole = load_mask(mask, size=rgb.shape[:2]) if mask is not None else np.zeros(rgb.shape[:2], bool)
        except UploadError as exc:
            raise user_error(str(exc)) from None
        if rgb.shape[0] == rgb.shape[1] < CANVAS // 2:  # tiny examples (64 px samples) would give a tiny canvas
            rgb = render.enlarge(rgb, CANVAS)
            hole = render.enlarge(hole.astype(np.uint8), CANVAS) > 0
        layer = render.solid_layer(hole, INPAINT_BRUSH, INPAINT_BRUSH_OPACITY)
        composite = render.flatten_over_white([render.to_rgba(rgb, np.full(rgb.shape[:2], 255, np.uint8)), layer],
                                              rgb.shape[:2])
        return {"background": rgb, "layers": [layer], "composite": composite}


def render_projected(request: engine.InversionRequest) -> np.ndarray:
    """The target as the engine compares it (greyscale / low resolution), uint8 RGB."""
    with torch.no_grad():
        return engine.project_target(request)


def render_thumb(rgb: np.ndarray) -> np.ndarray:
    """Frames kept in the session are at most THUMB px (1024 px catalogue models would use ~3 MB per frame)."""
    return rgb if rgb.shape[0] <= THUMB else fit_to_square(rgb, THUMB)[0]
