"""Per-visitor state and its lifetime: a `Session` (runs, their kept frames, latents, run folders) in, freed on leave.

Everything about one visitor lives in a `Session` object kept in a `gr.State` (never in module globals), passed
in and returned by every handler. `SessionRegistry` maps Gradio's session hash to it, so that a visitor who
disconnects has their Session released at once (`Handlers.on_unload`) instead of when Gradio expires the state.
"""
from __future__ import annotations

import logging
import math
import shutil
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import torch

import engine

from .packed import PackedImage
from .photo_inputs import FramedPhoto
from .settings import Settings

log = logging.getLogger(__name__)

LIBRARY_SIZE = 12
THUMB = 256  # side of the images kept per frame (1024 px catalogue models would use ~3 MB per frame)
NOISE_BUDGET = 64 * 2 ** 20  # bytes of noise maps one run keeps across its rewindable frames


@dataclass(eq=False)
class SavedFrame:
    """One streamed frame kept for rewinding: absolute step, latent (CPU), noises, image (<= 256 px)."""

    step: int
    latent: torch.Tensor
    space: str
    noises: tuple[torch.Tensor, ...] | None
    image: np.ndarray
    degraded: np.ndarray
    losses: dict[str, float]
    stage: str = "latent"  # 'tuning': made by this run's tuned generator copy (the latent is its pivot)
    weight_deltas: dict[str, torch.Tensor] | None = None  # the final frame of a tuned run (engine Frame)
    psnr: float = math.nan  # of what the loss compares (engine Frame.psnr / .ssim)
    ssim: float = math.nan


# Kept frames live as long as the session: their (<= THUMB px) images are held PNG-encoded, decoded on read.
SavedFrame.image = PackedImage("image")
SavedFrame.degraded = PackedImage("degraded")


@dataclass(eq=False)
class RunRecord:
    """The latest run of one tab: what was asked, every streamed frame, where its files are."""

    run_id: str
    task: str
    model_key: str
    model_name: str
    request: engine.InversionRequest
    input_view: np.ndarray
    folder: Path
    frames: list[SavedFrame] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    finished: bool = False
    files: list[str] = field(default_factory=list)
    final: SavedFrame | None = None
    stride: int = 0  # step spacing of the kept frames once thinned (0: every streamed frame is kept)
    photo: FramedPhoto | None = None  # the visitor's photo and where the model's frame sits in it

    def keep(self, frame: SavedFrame, *, limit: int) -> None:
        """Save a streamed frame, holding at most `limit`: beyond that only steps that are multiples of a
        doubling stride stay (plus the first and the latest), so the kept frames remain evenly spaced."""
        if self.stride and len(self.frames) > 1 and self.frames[-1].step % self.stride:
            self.frames.pop()  # kept only as "the latest"; the new frame replaces it
        self.frames.append(frame)
        while len(self.frames) > limit:
            if not self.stride:
                self.stride = max(1, min(b.step - a.step for a, b in zip(self.frames, self.frames[1:])))
            self.stride *= 2
            first, *middle, last = self.frames
            self.frames[:] = [first] + [f for f in middle if f.step % self.stride == 0] + [last]
        self._trim_noises()

    def _trim_noises(self) -> None:
        """Keep noise maps (optimised noise) on the newest frames only, within NOISE_BUDGET bytes per run: at
        1024 px one frame's maps are ~11 MB. The latest frame always keeps its own; continuing from a frame
        without them starts from fresh noise."""
        total = 0
        for f in reversed(self.frames):
            if f.noises:
                size = sum(n.numel() * n.element_size() for n in f.noises)
                if total + size > NOISE_BUDGET and f is not self.frames[-1]:
                    f.noises = None
                else:
                    total += size

    def frame_at(self, step: int) -> SavedFrame:
        """The last saved frame at or before `step` (the first frame if none)."""
        best = self.frames[0]
        for f in self.frames:
            if f.step <= step:
                best = f
        return best


@dataclass(eq=False)
class LatentEntry:
    """A finished run's latent, offered for interpolation."""

    key: str
    label: str
    model_key: str
    latent: torch.Tensor
    space: str
    image: np.ndarray


@dataclass(eq=False)
class Session:
    """Everything about one visitor (kept in a gr.State; deleted with the browser session)."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    runs: dict[str, RunRecord] = field(default_factory=dict)
    library: list[LatentEntry] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    counter: int = 0
    tune_steps: dict[str, int] = field(default_factory=dict)  # pivotal tuning steps per tab (the Settings slider)

    def remember(self, record: RunRecord, final: SavedFrame) -> None:
        """Offer `final` of `record` for interpolation (the newest LIBRARY_SIZE results are kept)."""
        key = f"{record.run_id}@{final.step}"
        self.library = [e for e in self.library if e.key != key]
        label = f"#{record.run_id.split('-')[0].lstrip('0') or '0'} {record.task} · {record.model_name} · " \
                f"{final.space} · step {final.step}"
        self.library.append(LatentEntry(key, label, record.model_key, final.latent, final.space, final.image))
        del self.library[:-LIBRARY_SIZE]


def as_session(session: Session | None) -> Session:
    """The given Session, or a new one (a visitor's first run; API clients may pass anything)."""
    return session if isinstance(session, Session) else Session()


def new_run_folder(session: Session, task: str, *, settings: Settings) -> tuple[str, Path]:
    """A fresh (run id, folder) for a run of `task`; the session's oldest folders beyond the server's limit go."""
    session.counter += 1
    run_id = f"{session.counter:03d}-{task}-{uuid.uuid4().hex[:6]}"
    folder = settings.runs_dir / f"{session.id}-{run_id}"
    folder.mkdir(parents=True, exist_ok=True)
    session.folders.append(folder)
    while len(session.folders) > settings.runs_kept_per_session:
        shutil.rmtree(session.folders.pop(0), ignore_errors=True)
    return run_id, folder


def release_session(session: Session) -> int:
    """Forget a session's runs, frames and latents and delete its run folders; returns how many runs it had.

    The emptied Session stays usable (a visitor who somehow comes back starts afresh)."""
    n = len(session.runs)
    for folder in session.folders:
        shutil.rmtree(folder, ignore_errors=True)
    session.folders.clear()
    session.runs.clear()
    session.library.clear()
    return n


def delete_session(session: Session | None) -> None:
    """gr.State delete callback (Gradio's own expiry of a session's state)."""
    if isinstance(session, Session):
        release_session(session)


def cleanup_stale_runs(settings: Settings, *, max_age_s: float = 24 * 3600) -> int:
    """Remove run folders older than `max_age_s` (left over from earlier server processes)."""
    removed = 0
    if settings.runs_dir.is_dir():
        now = time.time()
        for d in settings.runs_dir.iterdir():
            try:
                if d.is_dir() and now - d.stat().st_mtime > max_age_s:
                    shutil.rmtree(d, ignore_errors=True)
                    removed += 1
            except OSError:
                pass
    return removed


class SessionRegistry:
    """Gradio session hash -> that visitor's Session; weak, so Gradio's own expiry still frees it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: weakref.WeakValueDictionary[str, Session] = weakref.WeakValueDictionary()

    def adopt(self, session: Session | None, request: gr.Request | None = None) -> Session:
        """The visitor's Session (a new one on their first run), registered under Gradio's session hash so
        that `release` can free it the moment the browser tab or API client goes away."""
        session = as_session(session)
        key = getattr(request, "session_hash", None)
        if key:
            with self._lock:
                self._sessions[key] = session
        return session

    @property
    def open(self) -> frozenset[str]:
        """Session hashes of the visitors whose runs are held (released on disconnect)."""
        with self._lock:
            return frozenset(self._sessions.keys())

    def release(self, request: gr.Request | None) -> None:
        """The visitor behind `request` disconnected: free their runs now (a second notice is harmless)."""
        with self._lock:
            session = self._sessions.pop(getattr(request, "session_hash", None) or "", None)
        if session is not None:
            n = release_session(session)
            log.info("session closed: released %d run(s)", n)
