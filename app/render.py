"""Small, pure presentation helpers for the UI (numpy/OpenCV only; no state, no I/O).

Images are uint8 RGB `[H, W, 3]`, masks bool `[H, W]` (engine/types.py). Model outputs are tiny (64 px), so
what the browser shows is enlarged with nearest neighbour (crisp pixels) by `enlarge`; downloads keep the
model's own resolution.
"""
from __future__ import annotations

import cv2
import numpy as np

from engine.export import upscale
from engine.photo import crop_placement, strokes_to_frame

OUTLINE_RGB = (255, 40, 90)
WHITE = 255


def enlarge(rgb: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlarge a square image to `size` (larger images are returned as they are)."""
    return upscale(np.ascontiguousarray(rgb), size)


def center_square(arr: np.ndarray) -> np.ndarray:
    """The central square of an `[H, W, ...]` array (the same crop `uploads.fit_to_square` makes)."""
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return arr[top:top + s, left:left + s]


def shrink_strokes(rgb: np.ndarray, strokes: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Square stroke image + stroke mask -> (colours, mask) at `resolution`, by `engine.photo.strokes_to_frame`
    (a pixel is a stroke when any part of it was stroked; its colour is the mean of the stroked part only)."""
    return strokes_to_frame(rgb, strokes, crop_placement(rgb.shape[:2], resolution))


def with_outline(rgb: np.ndarray, mask: np.ndarray, size: int, *, colour: tuple[int, int, int] = OUTLINE_RGB,
                 thickness: int = 2) -> np.ndarray:
    """`rgb` enlarged to `size` with the boundary of `mask` (True inside) drawn over it."""
    big = enlarge(rgb, size).copy()
    s = big.shape[0]
    m = cv2.resize(mask.astype(np.uint8), (s, s), interpolation=cv2.INTER_NEAREST)
    kernel = np.ones((2 * thickness + 1, 2 * thickness + 1), np.uint8)
    edge = (cv2.dilate(m, kernel) - cv2.erode(m, kernel)) > 0
    big[edge & (m > 0)] = colour
    big[edge & (m == 0)] = (255, 255, 255)
    return big


def only_known(target: np.ndarray, known: np.ndarray, *, background: int = 235) -> np.ndarray:
    """The target where it constrains the result, light grey elsewhere (what a scribble asks for)."""
    out = np.full_like(target, background)
    out[known] = target[known]
    return out


def paste(original: np.ndarray, generated: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Inpainting composite: the original's known pixels, the generated pixels in the hole."""
    return np.where(known[..., None], original, generated).astype(np.uint8)


def faint(rgb: np.ndarray, strength: float = 0.25) -> np.ndarray:
    """Blend towards white: a guide that stays in the background."""
    return np.rint(WHITE - (WHITE - rgb.astype(np.float32)) * strength).astype(np.uint8)


def to_rgba(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """RGB + alpha `[H, W]` (bool or uint8) -> RGBA uint8 (e.g. an editable layer for the image editor)."""
    a = alpha.astype(np.uint8) * 255 if alpha.dtype == bool else alpha.astype(np.uint8)
    return np.dstack([rgb, a])


def solid_layer(mask: np.ndarray, rgb: tuple[int, int, int], opacity: float = 1.0) -> np.ndarray:
    """RGBA layer painted with one colour where `mask` is True, transparent elsewhere."""
    layer = np.zeros((*mask.shape, 4), np.uint8)
    layer[mask] = (*rgb, int(round(255 * opacity)))
    return layer


def flatten_over_white(rgba_layers: list[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Alpha-composite RGBA layers (each `[H, W, 4]`, `size` = (H, W)) in order over a white canvas."""
    out = np.full((*size, 3), float(WHITE), np.float32)
    for layer in rgba_layers:
        a = layer[..., 3:4].astype(np.float32) / 255.0
        out = layer[..., :3].astype(np.float32) * a + out * (1.0 - a)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def encode_png(rgb: np.ndarray) -> bytes:
    """uint8 RGB (or RGBA) -> PNG bytes."""
    arr = np.ascontiguousarray(rgb)
    code = cv2.COLOR_RGBA2BGRA if arr.ndim == 3 and arr.shape[2] == 4 else cv2.COLOR_RGB2BGR
    ok, buf = cv2.imencode(".png", cv2.cvtColor(arr, code) if arr.ndim == 3 else arr)
    if not ok:
        raise ValueError("could not encode a PNG")
    return buf.tobytes()


def side_by_side(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    """Same-height images in a row with white gaps."""
    h = max(i.shape[0] for i in images)
    parts = []
    for k, img in enumerate(images):
        if img.shape[0] != h:
            img = cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h), interpolation=cv2.INTER_NEAREST)
        parts.append(img)
        if k < len(images) - 1:
            parts.append(np.full((h, gap, 3), WHITE, np.uint8))
    return np.concatenate(parts, axis=1)
