"""Image files <-> the engine's uint8 RGB arrays for the CLI and tools (OpenCV; converts BGR at this edge).

`read_rgb` -> `[H, W, 3]` uint8 RGB; `read_mask` -> `[H, W]` bool (True = white/painted, > 127);
`fit_square` centre-crops and resizes to the model's resolution and says what it did; `fit_mask` does the same
crop for a mask, where an output pixel is painted when any part of it was (`coverage`).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .types import EngineError

PAINTED_SHARE = 1e-3
"""An output pixel counts as painted when more than this share of it was (i.e. any part of it)."""


def read_rgb(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise EngineError(f"input file not found: {p}")
    img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise EngineError(f"{p.name} is not a readable image")
    if img.dtype == np.uint16:
        img = (img / 257).round().astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        bgr = img[..., :3].astype(np.float32)
        a = img[..., 3:4].astype(np.float32) / 255
        img = (bgr * a + 255 * (1 - a)).round().astype(np.uint8)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_BGR2RGB)


def read_mask(path: str | Path) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise EngineError(f"mask file not found: {p}")
    m = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if m is None:
        raise EngineError(f"{p.name} is not a readable mask image")
    if m.ndim == 3:
        m = m[..., 3] if m.shape[2] == 4 and m[..., 3].min() < 255 else m[..., :3].max(axis=2)
    return m > 127


def fit_square(rgb: np.ndarray, resolution: int) -> tuple[np.ndarray, str]:
    """Centre-crop to a square and resize to `resolution` (area filter down, cubic up)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    sq = rgb[top:top + s, left:left + s]
    note = f"centre-cropped {w}x{h} to {s}x{s}" if (h, w) != (s, s) else f"{w}x{h}"
    if s != resolution:
        interp = cv2.INTER_AREA if s > resolution else cv2.INTER_CUBIC
        sq = cv2.resize(sq, (resolution, resolution), interpolation=interp)
        note += f", resized to {resolution}x{resolution}"
    return np.ascontiguousarray(sq), note


def coverage(mask: np.ndarray, resolution: int) -> np.ndarray:
    """Square bool mask `[S, S]` -> float `[resolution, resolution]`: the painted share of each output pixel."""
    m = np.ascontiguousarray(mask, dtype=np.float32)
    return cv2.resize(m, (resolution, resolution), interpolation=cv2.INTER_AREA)  # (enlarging: like nearest)


def fit_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """The same crop as `fit_square` for a bool mask; an output pixel is painted when any part of it was
    (so thin strokes survive downscaling; the app's editor masks follow the same rule)."""
    h, w = mask.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return coverage(mask[top:top + s, left:left + s], resolution) > PAINTED_SHARE
