"""The app's tabs and what any handler may hand back besides results: user errors, warnings, the no-change tick.

Outputs of a task tab, in order (`TAB_OUTPUTS`): input view (what the result must match), result, second
view (what the loss compares; for inpainting the raw generator output), loss plot, status (Markdown),
downloads (list of files), rewind slider, session. Reconstruct adds a before/after alignment view.
While a run is between frames, a *tick* (every output skipped but the session; see `is_tick`) is yielded every
`Settings.heartbeat_s`, so that Stop and disconnects take effect at once.
"""
from __future__ import annotations

import logging
from typing import Any

import gradio as gr
import torch

import engine
from models import CheckpointError

from .messages import for_user
from .uploads import UploadError

log = logging.getLogger(__name__)

TASKS = ("scribble", "inpaint", "reconstruct", "colorize", "deblur", "superres")
TABS = TASKS + ("interpolate",)
PERCEPTUAL_NETS = ("discriminator", "mobilenet", "vgg16", "none")


def tick(session: Any) -> tuple:
    """A task tab's output that changes nothing (yielded while waiting for the engine's next frame)."""
    return (gr.skip(),) * 7 + (session,)


def is_tick(out: tuple) -> bool:
    skip = gr.skip()
    return len(out) >= 8 and all(isinstance(o, dict) and o == skip for o in out[:7])


def user_error(message: str) -> gr.Error:
    """A gr.Error for the user: plain text that is safe as HTML (Gradio renders it as HTML in the browser but
    gives API clients the string as it is; file names come from users), server folders named by role."""
    return gr.Error(for_user(message), print_exception=False)


def as_user_error(exc: BaseException, what: str) -> gr.Error:
    """Any exception raised while preparing or running `what` -> the gr.Error the user sees (unexpected ones logged)."""
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, UploadError):
        return user_error(str(exc))
    if isinstance(exc, CheckpointError):
        return user_error(f"This model cannot be used: {exc}")
    if isinstance(exc, engine.EngineError):
        return user_error(f"The {what} cannot run: {exc}.")
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return user_error("Out of memory. Try a smaller model, fewer steps or a smaller image.")
    log.error("unexpected error during %s", what, exc_info=exc)
    return user_error(f"Something went wrong during the {what} ({type(exc).__name__}). The details are in the "
                      "server log; please try again or change the settings.")


def warn(message: str) -> None:
    gr.Warning(for_user(message))
