"""Helpers shared by the app tests: run the Gradio app in-process on a free port, build editor inputs.

Not a test module (no `test_` prefix). The app's own fixtures live in the test modules; `tests/conftest.py`
(tiny networks, network guard) is another helper's file.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

import models
from tests.tiny import make_tiny_model

TINY = "tiny32"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_tiny_models(folder: Path) -> Path:
    """A models folder holding the native tiny32 (what `tests/conftest.py`'s tiny_models_dir holds)."""
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / f"{TINY}.json").is_file():
        m = make_tiny_model(resolution=32)
        models.save_model(folder / TINY, m.config, m.G, m.D)
    return folder


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """The machine running the suite is shared with training jobs: one thread is far faster than two."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def running_app(settings) -> Iterator[tuple[str, object, object]]:
    """Launch build_demo(settings) in-process; yields (url, demo, handlers)."""
    from app.handlers import Handlers
    from app.ui import build_demo, launch_kwargs, start_queue

    handlers = Handlers(settings)
    demo = build_demo(settings, handlers=handlers)
    start_queue(demo, settings)
    kwargs = launch_kwargs(settings)
    kwargs.update(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=settings.port)
    with env(**settings.gradio_env):
        demo.launch(**kwargs)
        try:
            yield f"http://127.0.0.1:{settings.port}/", demo, handlers
        finally:
            demo.close()


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def two_tone(h: int = 96, w: int = 128, left=(30, 120, 200), right=(220, 200, 40)) -> np.ndarray:
    """A photo-like test picture: two flat halves (easy to recognise after any crop)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = left
    img[:, w // 2:] = right
    return img


def layer_with(mask: np.ndarray, rgb=(255, 0, 140), alpha: int = 150) -> np.ndarray:
    """An RGBA editor layer painted with `rgb` where `mask` is True."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (*rgb, alpha)
    return layer


def box_mask(shape: tuple[int, int], top: int, left: int, bottom: int, right: int) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[top:bottom, left:right] = True
    return m
