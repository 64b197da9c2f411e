"""The Interpolate tab's run: two images (reconstructed first) or two earlier results -> a morph, streamed.

Outputs, in order: preview, loss plot, status, MP4 video, GIF, frames gallery, downloads, session (8, the
session last, like a task tab's, so a tick from `app.tabs` fits here too).
"""
from __future__ import annotations

import dataclasses
import html
import logging
import time
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np

import engine
from engine.export import strip, write_gif, write_mp4, write_png
from engine.interpolate import common_space, interpolation_frames, lift
from engine.state import EditState, save_state

from . import inputs, views
from .controls import number, parse_controls
from .model_cache import resolve
from .session import THUMB, RunRecord, Session, new_run_folder
from .streaming import Runner
from .tabs import as_user_error, is_tick, tick, user_error

log = logging.getLogger(__name__)

MAX_FRAMES_INTERP = 120


def interpolate(runner: Runner, session: Session, *, image_a: Any, image_b: Any, earlier_a: str | None,
                earlier_b: str | None, frames: Any, model: str | None, controls: tuple) -> Iterator[tuple]:
    """Morph between two images (reconstructed first) or two earlier results of `session` (library keys)."""
    settings = runner.settings
    started = time.perf_counter()
    notices: list[str] = []
    try:
        n = number("Frames", frames, integer=True, minimum=2)
        if n > MAX_FRAMES_INTERP:
            raise user_error(f"At most {MAX_FRAMES_INTERP} frames, please (you asked for {n}).")
        c = parse_controls(controls)
        key = resolve(model, settings)
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
        loading = runner.loading_notice(key)
        if loading:
            yield (None, None, f"**Loading** — {loading}", None, None, None, None, session)
        key, m = runner.model(key)
        cfg = runner.config("interpolate", m, c, notices)
        # The two ends are reconstructed with the untuned generator the morph uses, whatever the model's default.
        cfg = cfg.replace(tuning=dataclasses.replace(cfg.tuning, steps=0))
        if any(session.tune_steps.values()):
            notices.append("Interpolation morphs with the shared, untuned generator: pivotal tuning only "
                           "applies to the single-image tabs.")
        photos = {name: inputs.frame(inputs.read_photo(image, notices, settings=settings, what=f"image {name}"), m,
                                     notices, (None, None, None)).target()  # faces aligned on face models
                  for name, image, entry in sides if entry is None}
    except Exception as exc:
        raise as_user_error(exc, "interpolation") from None

    size = settings.display_size
    run_id, folder = new_run_folder(session, "interpolate", settings=settings)
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
                        request=request, input_view=views.enlarge(photos[name], size=size), folder=sub,
                        notices=notices)
        try:
            for out in runner.stream(rec, m, request, session, started=started,
                                     deadline=started + settings.time_limit * share):
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
            shown = views.pub(folder, views.enlarge(img, size=size))
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


def library_choices(session: Session | None) -> tuple[dict, dict]:
    """Dropdown updates (A, B) listing the session's earlier results, newest first."""
    lib = session.library if isinstance(session, Session) else []
    choices = [("(none: use the image)", "")] + [(e.label, e.key) for e in reversed(lib)]
    return gr.update(choices=choices), gr.update(choices=choices)
