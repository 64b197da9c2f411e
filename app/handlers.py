"""Event handlers, one public method per endpoint: Gradio values in (named as in the API), outputs out.

Each method only hands its values to the module doing the job: `app.controls` (settings sliders),
`app.inputs` (editor values and uploads), `app.streaming` (runs), `app.views` (what the page shows),
`app.interpolation` (the Interpolate tab), `app.session` (per-visitor state). Output orders are in `app.tabs`.
Public method names, parameter names and their order are the app's API (`app.ui` wires them, clients call
them by name): keep them.

`Handlers(settings)` holds what is shared by every visitor: the settings, the model cache, the `Runner` (engine
lanes, live-run counters) and the registry of open sessions. Everything about one visitor lives in a `Session`
passed in and returned by every handler. Each task handler is a generator; Gradio closes it when the user
presses Stop or goes away, which cancels the engine run. A visitor who disconnects has their Session released
at once (`on_unload`).
"""
from __future__ import annotations

import dataclasses
import html
from pathlib import Path

import gradio as gr

from engine.interpolate import render as render_latent

from . import inputs, interpolation, views
from .controls import TUNING_TABS, changed_defaults, control_defaults, defaults_key, tuning_default
from .direct import RunFrames
from .model_cache import ModelCache, describe
from .session import THUMB, Session, SessionRegistry
from .settings import Settings
from .streaming import Runner
from .tabs import as_user_error


class Handlers:
    """All event handlers of the app; one instance per server (shared state: settings, model cache)."""

    def __init__(self, settings: Settings, *, cache: ModelCache | None = None,
                 run_frames: RunFrames | None = None) -> None:
        self.settings = settings
        self.cache = cache or ModelCache(device=settings.device, maxsize=settings.model_cache_size)
        self.runner = Runner(settings, self.cache, run_frames=run_frames)
        self.sessions = SessionRegistry()

    # ----------------------------------------------------------------------------- bookkeeping

    @property
    def run_frames(self) -> RunFrames | None:
        """Given: every run is direct (ZeroGPU, app.direct), no engine lanes."""
        return self.runner.run_frames

    @property
    def active_runs(self) -> int:
        return self.runner.active_runs

    @property
    def runs_started(self) -> int:
        return self.runner.runs_started

    @property
    def runs_closed(self) -> int:
        return self.runner.runs_closed

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

    def _session(self, session: Session | None, request: gr.Request | None = None) -> Session:
        return self.sessions.adopt(session, request)

    # ---------------------------------------------------------------------------- public: tasks

    def scribble(self, sketch, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist,
                 optimize_noise, optimizer, seed, preview_every, session=None,
                 request: gr.Request | None = None):
        """Scribble to image: only the drawn pixels constrain the result (their colours are the target)."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def prepare(m, notices):
            colours, strokes = inputs.scribble_input(sketch, m.resolution, notices, settings=self.settings)
            return colours, strokes, {}
        yield from self.runner.run_task("scribble", model, controls, self._session(session, request), prepare)

    def inpaint(self, editor, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist,
                optimize_noise, optimizer, seed, preview_every, session=None,
                request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None, tune_steps=None):
        """Inpaint: the painted region is filled in, the rest of the photo is matched. crop_*: the square the
        model sees on non-face models (centre x, centre y, side; percent). tune_steps (the photo tabs' API
        parameter): pivotal tuning steps after the search; None = the Settings slider, else the model's default."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def prepare(m, notices):
            target, hole, framed = inputs.inpaint_input(editor, m, notices, (crop_x, crop_y, crop_size),
                                                        settings=self.settings)
            return target, hole, {}, framed
        yield from self.runner.run_task("inpaint", model, controls, self._session(session, request), prepare,
                                          tune_steps=tune_steps)

    def reconstruct(self, image, align_face, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net,
                    latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
                    request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None, tune_steps=None):
        """Reconstruct a photo (face-aligned on face models, or when asked). Adds a before/after alignment output."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)
        aligned: list = [None]

        def prepare(m, notices):
            framed, aligned[0] = inputs.reconstruct_input(image, align_face, m, notices, (crop_x, crop_y, crop_size),
                                                          settings=self.settings, thumb=THUMB)
            return framed.target(), None, {}, framed
        outs = self.runner.run_task("reconstruct", model, controls, self._session(session, request), prepare,
                                    tune_steps=tune_steps)
        yield from views.with_alignment_view(outs, aligned)

    def colorize(self, image, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist,
                 optimize_noise, optimizer, seed, preview_every, session=None,
                 request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None, tune_steps=None):
        """Colorize: only the brightness of the photo is matched; the model supplies the colours (the result keeps
        the photo's own brightness at its own size)."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def prepare(m, notices):
            framed = inputs.framed_photo(image, m, notices, (crop_x, crop_y, crop_size), settings=self.settings)
            return framed.target(), None, {}, framed
        yield from self.runner.run_task("colorize", model, controls, self._session(session, request), prepare,
                                          tune_steps=tune_steps)

    def deblur(self, image, kernel_size, sigma, blur_first, model, latent_space, steps, lr, l1, l2, perceptual,
               perceptual_net, latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
               request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None, tune_steps=None):
        """Deblur: find a sharp image whose blurred version matches the photo."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def prepare(m, notices):
            k, s = inputs.blur_options(kernel_size, sigma)
            framed = inputs.framed_photo(image, m, notices, (crop_x, crop_y, crop_size), settings=self.settings)
            if blur_first:
                notices.append(f"Demo: your photo was blurred first (kernel {k}, sigma {s:g}).")
            return framed.target(), None, dict(kernel_size=k, sigma=s, degrade_input=bool(blur_first)), framed
        yield from self.runner.run_task("deblur", model, controls, self._session(session, request), prepare,
                                          tune_steps=tune_steps)

    def superres(self, image, factor, model, latent_space, steps, lr, l1, l2, perceptual, perceptual_net,
                 latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
                 request: gr.Request | None = None, crop_x=None, crop_y=None, crop_size=None, tune_steps=None):
        """Super-resolve: find an image whose `factor`-times smaller version matches the photo."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)

        def prepare(m, notices):
            f = inputs.superres_factor(factor, m.resolution)
            framed = inputs.framed_photo(image, m, notices, (crop_x, crop_y, crop_size), settings=self.settings)
            return framed.target(), None, dict(factor=f), framed
        yield from self.runner.run_task("superres", model, controls, self._session(session, request), prepare,
                                          tune_steps=tune_steps)

    # ------------------------------------------------------------------------ continue / rewind

    def continue_run(self, task, from_step, rewind, model_choice, latent_space, steps, lr, l1, l2, perceptual,
                     perceptual_net, latent_dist, optimize_noise, optimizer, seed, preview_every, session=None,
                     request: gr.Request | None = None):
        """Continue the tab's latest run from its end (rewind=False) or from saved step `from_step`."""
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)
        yield from self.runner.continue_run(task, from_step, rewind, model_choice, controls,
                                            self._session(session, request))

    def set_tuning(self, tab, steps, session=None):
        """The Settings slider 'Pivotal tuning steps' of a tab (0 = off) -> the session."""
        session = self._session(session)
        try:
            session.tune_steps[tab] = max(0, int(steps or 0))
        except (TypeError, ValueError):
            session.tune_steps[tab] = 0
        return session

    def rewind_preview(self, task, step, session=None):
        """Show the saved frame at `step` (no computation). Returns (result, second view, status)."""
        record = session.runs.get(task) if isinstance(session, Session) else None
        return views.saved_frame(record, step, size=self.settings.display_size)

    def after_stop(self, task, session=None):
        """After Stop: downloads and rewind slider from the frames streamed so far. (status, files, slider)."""
        record = session.runs.get(task) if isinstance(session, Session) else None
        return views.stopped(record, session)

    # --------------------------------------------------------------------------------- interpolate

    def interpolate(self, image_a, image_b, earlier_a, earlier_b, frames, model, latent_space, steps, lr, l1, l2,
                    perceptual, perceptual_net, latent_dist, optimize_noise, optimizer, seed, preview_every,
                    session=None,
                    request: gr.Request | None = None):
        """Morph between two images (reconstructed first) or two earlier results of this session.

        Outputs: preview, loss plot, status, MP4 video, GIF, frames gallery, downloads, session.
        """
        controls = (latent_space, steps, lr, l1, l2, perceptual, perceptual_net, latent_dist, optimize_noise,
                    optimizer, seed, preview_every)
        yield from interpolation.interpolate(self.runner, self._session(session, request), image_a=image_a,
                                             image_b=image_b, earlier_a=earlier_a, earlier_b=earlier_b,
                                             frames=frames, model=model, controls=controls)

    def library_choices(self, session=None):
        """Dropdown updates (A, B) listing this session's earlier results."""
        return interpolation.library_choices(session)

    # ----------------------------------------------------------------------------------- helpers

    def reset_defaults(self, tab: str, model_choice: str | None) -> tuple:
        """The tab's default controls for the chosen model (its architecture and task overrides), then its default
        tuning steps for a tab with tuning."""
        info = describe(model_choice, self.settings)
        tuning = (tuning_default(tab, info.arch, info.task_defaults),) if tab in TUNING_TABS else ()
        return dataclasses.astuple(control_defaults(tab, info.arch, info.task_defaults)) + tuning

    def model_changed(self, model_choice: str | None, previous_key: str | None) -> tuple:
        """(defaults key, *every tab's controls, *tuning steps of TUNING_TABS): a tab's controls (its tuning
        slider) go back to their defaults only when the new model's defaults for them differ (StyleGAN2 <-> DCGAN,
        or a model's own task overrides), so switching between models with the same defaults keeps the user's
        settings."""
        info = describe(model_choice, self.settings)
        return (defaults_key(info.arch, info.task_defaults),) + changed_defaults(previous_key, info.arch,
                                                                                 info.task_defaults)

    def crop_view(self, source, crop_x, crop_y, crop_size, model_choice):
        """The photo with the square the model will see drawn on it (the aligned face on face models)."""
        return inputs.crop_view(source, (crop_x, crop_y, crop_size), model_choice, settings=self.settings)

    def model_info(self, model_choice: str | None) -> str:
        if not model_choice:
            return "No model available: put a model in assets/models/ or start with `--model PATH`."
        info = describe(model_choice, self.settings)
        res = f"{info.resolution} px" if info.resolution else "resolution known after loading"
        return (f"**{html.escape(Path(str(model_choice)).name)}** — {info.arch}, {res}, "
                f"{html.escape(info.domain)}. Licence: {html.escape(info.licence)}.")

    def guide(self, show: bool, model_choice: str | None):
        """A blank sketch canvas, with the model's average picture faintly underneath when `show`."""
        if not show:
            return inputs.sketch_canvas(None)
        try:
            _, m = self.runner.model(model_choice)
            mean = render_latent(m, m.w_avg.detach().cpu().reshape(1, -1), "w")
        except Exception as exc:
            raise as_user_error(exc, "guide") from None
        return inputs.sketch_canvas(mean)

    def scribble_example(self, sketch):
        """An example stroke picture -> an editable stroke layer on a white canvas."""
        value = inputs.scribble_example(sketch)
        return gr.skip() if value is None else value

    def inpaint_example(self, photo, mask):
        """An example (photo, mask: white = fill) -> editor value with the mask as an editable painted layer."""
        return inputs.inpaint_example(photo, mask)
