"""Photo tabs' framing: an upload -> the square the model sees, kept with the photo so a result goes back into it.

Face models get the face aligned (`app.face_align`, dlib) for every photo task; other models (or no face found)
use the visitor's crop box (centre x, centre y and side in percent; default the centred square). The maths is the
engine's (`engine.photo`), so the app and the CLI produce the same `composite.png`.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from engine.framing import is_face_model
from engine.photo import (CropBox, Placement, crop_from_fractions, crop_placement, footprint, mask_to_frame,
                          photo_composite, to_frame)

log = logging.getLogger(__name__)
PREVIEW_SIDE = 512
OUTLINE_RGB = (255, 40, 90)
NO_MODULE = "Face alignment is not available in this installation; the photo is centre-cropped instead."


@dataclass(frozen=True, eq=False)
class FramedPhoto:
    """The visitor's photo (uint8 RGB, own size; for colorize as given), where the model's frame sits in it, and
    the inpaint region in photo pixels (or None)."""

    photo: np.ndarray
    placement: Placement
    painted: np.ndarray | None = None

    def target(self) -> np.ndarray:
        return to_frame(self.photo, self.placement)

    def painted_in_frame(self) -> np.ndarray | None:
        return None if self.painted is None else mask_to_frame(self.painted, self.placement)

    def painted_outside(self) -> bool:
        """Whether part of the painted region lies outside the model's frame."""
        if self.painted is None:
            return False
        return bool((self.painted & (footprint(self.placement, feather=0) <= 0)).any())

    def composite(self, task: str, result: np.ndarray) -> np.ndarray:
        """The result put back into the photo at the photo's own resolution."""
        return photo_composite(task, self.photo, result, self.placement, painted=self.painted)

    def preview(self, task: str, result: np.ndarray, *, max_side: int = PREVIEW_SIDE) -> np.ndarray:
        """The composite of a smaller copy of the photo (cheap enough for every streamed frame)."""
        small = self.smaller(max_side)
        return small.composite(task, result)

    def smaller(self, max_side: int) -> "FramedPhoto":
        h, w = self.photo.shape[:2]
        s = max_side / max(h, w)
        if s >= 1:
            return self
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        fx, fy = nw / w, nh / h
        photo = cv2.resize(self.photo, (nw, nh), interpolation=cv2.INTER_AREA)
        pre = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])  # small -> photo
        p = self.placement
        placement = Placement(p.matrix @ pre, p.size, (nh, nw), "face")  # a general warp (not an exact crop)
        painted = None
        if self.painted is not None:
            painted = cv2.resize(self.painted.astype(np.uint8), (nw, nh), interpolation=cv2.INTER_NEAREST) > 0
        return FramedPhoto(photo, placement, painted)


def crop_box(shape: tuple[int, int], cx: float | None, cy: float | None, side: float | None) -> CropBox | None:
    """Crop sliders (percent) -> a box inside the photo; None for the centred square (no value, or the defaults)."""
    if cx is None and cy is None and side is None:
        return None
    try:
        cxf, cyf = float(50 if cx is None else cx) / 100, float(50 if cy is None else cy) / 100
        sf = float(100 if side is None else side) / 100
    except (TypeError, ValueError):
        return None
    if not all(np.isfinite([cxf, cyf, sf])) or (cxf, cyf, sf) == (0.5, 0.5, 1.0):
        return None  # the sliders' defaults: the centred square
    return crop_from_fractions(shape, cx=cxf, cy=cyf, side=sf)


def wants_alignment(model_name: str, domain: str) -> bool:
    return is_face_model(model_name, domain)


def frame_photo(rgb: np.ndarray, size: int, *, align: bool, crop: CropBox | None, notices: list[str],
                warn: Callable[[str], None], painted: np.ndarray | None = None) -> FramedPhoto:
    """Frame an upload: aligned face when `align` and a face is found, else the crop (with a notice saying which)."""
    h, w = rgb.shape[:2]
    if align:
        placement = _aligned(rgb, size, notices, warn)
        if placement is not None:
            return FramedPhoto(rgb, placement, painted)
    p = crop_placement((h, w), size, crop)
    b = p.box
    if crop is not None:
        notices.append(f"The model sees the {b.side}x{b.side} square at ({b.x}, {b.y}) of your {w}x{h} photo.")
    elif (b.side, b.side) != (w, h):
        notices.append(f"Input centre-cropped {w}x{h} to {b.side}x{b.side} (move or resize the square with the crop "
                       "sliders).")
    return FramedPhoto(rgb, p, painted)


def _aligned(rgb: np.ndarray, size: int, notices: list[str], warn: Callable[[str], None]) -> Placement | None:
    try:
        face_align = importlib.import_module("app.face_align")
    except ImportError:
        notices.append(NO_MODULE)
        warn(NO_MODULE)
        return None
    try:
        result = face_align.align_face(rgb, size=size)
    except Exception as exc:  # noqa: BLE001 - alignment is optional: never fail the run for it
        log.warning("face alignment failed", exc_info=True)
        result, notice = None, f"face alignment failed ({type(exc).__name__})"
    else:
        notice = getattr(result, "notice", "")
    if result is None or not result.found or getattr(result, "placement", None) is None:
        msg = f"No face aligned ({notice or 'no face found'}); the crop is used instead."
        notices.append(msg)
        warn(msg)
        return None
    if notice:
        notices.append(f"Face alignment: {notice}.")
    notices.append("Face aligned to the model's framing.")
    return result.placement


def outline(rgb: np.ndarray, placement: Placement, *, max_side: int = PREVIEW_SIDE) -> np.ndarray:
    """The photo (at most `max_side`) with the model's frame drawn on it (a rotated square for an aligned face)."""
    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    img = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA) \
        if s < 1 else rgb.copy()
    r = placement.size
    corners = np.array([[-0.5, -0.5], [r - 0.5, -0.5], [r - 0.5, r - 0.5], [-0.5, r - 0.5]])
    inv = placement.inverse()
    pts = (corners @ inv[:, :2].T + inv[:, 2] + 0.5) * s - 0.5
    thickness = max(2, round(max(img.shape[:2]) / 200))
    cv2.polylines(img, [np.rint(pts).astype(np.int32).reshape(-1, 1, 2)], True, OUTLINE_RGB, thickness,
                  cv2.LINE_AA)
    return img
