"""A run as the page shows it: RunRecord + frame -> display files, status line (PSNR/SSIM), loss plot, downloads.

Display images are written once into the run's folder, named by content (see `pub`); `write_files` writes the
downloads of a finished (or stopped) run. No engine runs here.
"""
from __future__ import annotations

import hashlib
import html
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import gradio as gr
import numpy as np
import torch

import engine
from engine.export import loss_plot as plot_losses, write_gif, write_png, write_quality_csv
from engine.state import EditState, save_state

from . import render
from .session import THUMB, RunRecord, SavedFrame, Session
from .uploads import fit_to_square

log = logging.getLogger(__name__)


@dataclass
class Live:
    """What one streamed update shows."""

    frame: SavedFrame
    total: int
    started: float
    first_frame_s: float | None
    steps_per_s: float


def render_projected(request: engine.InversionRequest) -> np.ndarray:
    """The target as the engine compares it (greyscale / low resolution), uint8 RGB."""
    with torch.no_grad():
        return engine.project_target(request)


def enlarge(rgb: np.ndarray, *, size: int) -> np.ndarray:
    return render.enlarge(rgb, size)


def input_view(task: str, request: engine.InversionRequest, *, size: int) -> np.ndarray:
    """What the result must match, at display size (inpainting: the hole outlined; scribbles: the strokes only)."""
    if task == "inpaint":
        return render.with_outline(request.target, ~request.known, size)
    if task == "scribble":
        return enlarge(render.only_known(request.target, request.known), size=size)
    return enlarge(render_projected(request), size=size)


def pub(folder: Path, rgb: np.ndarray | None) -> str | None:
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


def pasted(request: engine.InversionRequest, image: np.ndarray) -> np.ndarray:
    """An inpainting result (any size) fitted to the target's size and shown only in the hole: the known pixels
    stay the target's."""
    side = request.target.shape[0]
    small = image if image.shape[0] == side else fit_to_square(image, side)[0]
    return render.paste(request.target, small, request.known)


def views(record: RunRecord, image: np.ndarray, degraded: np.ndarray, *, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(result, second view) for display."""
    req = record.request
    if record.photo is not None and record.task in ("inpaint", "colorize"):
        return record.photo.preview(record.task, image), enlarge(image, size=size)  # your photo, edited
    if record.photo is not None and record.task == "reconstruct":  # what the loss compares is the result itself
        return enlarge(image, size=size), record.photo.preview(record.task, image)
    if record.task == "inpaint":
        return enlarge(pasted(req, image), size=size), enlarge(image, size=size)
    if record.task == "scribble":
        return enlarge(image, size=size), render.with_outline(image, req.known, size)
    return enlarge(image, size=size), enlarge(degraded, size=size)


def shown(record: RunRecord, image: np.ndarray, degraded: np.ndarray, *, size: int) -> tuple[str, str]:
    """(result, second view) as display files."""
    result, second = views(record, image, degraded, size=size)
    return pub(record.folder, result), pub(record.folder, second)


def input_shown(record: RunRecord) -> str:
    return pub(record.folder, record.input_view)


def loss_plot(record: RunRecord) -> np.ndarray:
    return plot_losses([(f.step, f.losses) for f in record.frames])


def loss_shown(record: RunRecord) -> str:
    return pub(record.folder, loss_plot(record))


def status(record: RunRecord, live: Live | None, *, headline: str) -> str:
    """The status Markdown: headline, step / speed / elapsed / loss / PSNR·SSIM when live, the run's notices."""
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


def rewind_slider(record: RunRecord, final: SavedFrame) -> dict:
    """The rewind slider over the kept frames' steps, set to `final`."""
    steps = [f.step for f in record.frames]
    return gr.update(minimum=min(steps), maximum=max(max(steps), min(steps) + 1), value=final.step, step=1,
                     interactive=True)


def write_files(record: RunRecord, final: SavedFrame, *, full: np.ndarray | None = None) -> list[str]:
    """The downloads of a run ending at `final`: result, input, composite, quality CSV, latent, GIF, loss plot.
    `full`: the final image at the model's resolution when the run still has it (kept frames are thumbnails)."""
    d = record.folder
    req = record.request
    image = full if full is not None else final.image
    files = [write_png(d / "result.png", image)]
    if record.task == "inpaint":
        files.append(write_png(d / "result_pasted.png", pasted(req, image)))
    files.append(write_png(d / "input.png", req.target))
    if record.photo is not None:  # the result put back into the photo, at the photo's own size
        files.append(write_png(d / "composite.png", record.photo.composite(record.task, image)))
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
    files.append(write_png(d / "loss.png", loss_plot(record)))
    return [str(p) for p in files]


def conclude(record: RunRecord, final: SavedFrame, session: Session, *, full: np.ndarray | None = None) -> None:
    """Mark the run finished at `final` (`full`: its image at the model's resolution, if known): write its
    downloads, offer its latent for interpolation."""
    record.finished, record.final = True, final
    record.files = write_files(record, final, full=full)
    session.remember(record, final)


def stopped(record: RunRecord | None, session: Session) -> tuple:
    """After Stop: (status, files, slider) from the frames streamed so far; skips when there is nothing to do."""
    if record is None or not record.frames or record.finished:
        return gr.skip(), gr.skip(), gr.skip()
    final = record.frames[-1]
    record.notices.append(f"Stopped by you at step {final.step}; the downloads hold that step's result.")
    conclude(record, final, session)
    return status(record, None, headline="**Stopped**"), record.files, rewind_slider(record, final)


def saved_frame(record: RunRecord | None, step: Any, *, size: int) -> tuple:
    """(result, second view, status) of the saved frame at `step` (no computation); skips when there is none."""
    if record is None or not record.frames:
        return gr.skip(), gr.skip(), gr.skip()
    try:
        k = int(step)
    except (TypeError, ValueError):
        return gr.skip(), gr.skip(), gr.skip()
    f = record.frame_at(k)
    result, second = shown(record, f.image, f.degraded, size=size)
    return result, second, (f"**Step {f.step}** (saved frame) — loss {f.losses.get('total', float('nan')):.4g}. "
                            "Press *Continue from this step* to optimise on from here.")


def with_alignment_view(outs: Iterator[tuple], aligned: list) -> Iterator[tuple]:
    """Reconstruct's outputs: every task output plus the (photo, aligned face) pair once `aligned[0]` is set and
    the run's folder exists (None until then, and when no face was aligned)."""
    pair = None
    for out in outs:
        if aligned[0] is not None and pair is None and isinstance(out[7], Session) and "reconstruct" in out[7].runs:
            folder = out[7].runs["reconstruct"].folder
            pair = tuple(pub(folder, img) for img in aligned[0])
        yield out + (pair,)
