"""Automatic face alignment: a photo of a person -> a square crop framed like face64's training images.

(Engine-side so that the CLI, the gallery and the app align the same way; `app.face_align` is this module.)

The face64 model was trained on the UTKFace "aligned & cropped" images (resized to 64x64). Its framing
is captured by `assets/face_template.json`: the mean position of dlib's 68 facial landmarks over a few
hundred of those crops, normalised to [0, 1] (made by `python -m app.face_template`). `align_face`
finds a face in a user's photo with dlib's HOG detector, locates its 68 landmarks, fits a similarity
transform (rotation + uniform scale + shift) from them to the template scaled to the output size, and
warps the photo with it, so the result is framed the way the generator expects.

Coordinates: pixel centres sit at integer coordinates (dlib's and OpenCV's convention). The template
stores ``(x + 0.5) / width`` so that it does not depend on the crop's resolution; an output of ``size``
pixels puts template point ``t`` at ``t * size - 0.5``.

Contract: the input is a uint8 RGB array ``[H, W, 3]`` (as produced by `app.uploads.load_image`);
anything else is a caller bug (`ValueError`). Everything else never raises: no face, a missing dlib,
missing model files or a missing template give ``found=False`` with a notice meant for the user.
The detector and the 68-point predictor are loaded once, lazily, under a lock; calls into dlib are
serialised (HOG detection takes ~0.1 s on a 512 px photo).
"""
from __future__ import annotations

import importlib.util
import json
import math
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .photo import Placement, face_placement, warp

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "assets" / "face_template.json"
PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
NUM_LANDMARKS = 68

NO_FACE_NOTICE = "no face found: use the manual crop"
DETECT_MAX_SIDE = 1024
"""Photos with a longer side are downscaled (for detection only) to this many pixels."""
UPSAMPLE_MAX_SIDE = 800
"""When no face is found at first, detection is retried on a 2x upsampled image if its long side is at most this."""
SMALL_FACE_PX = 64
"""A face whose detection box is narrower than this gets a notice (face64 renders faces ~55 px wide)."""
MIN_SIZE, MAX_SIZE = 16, 4096


@dataclass(frozen=True, eq=False)
class AlignResult:
    """Outcome of `align_face`.

    aligned: uint8 RGB ``[size, size, 3]`` or None when no face was aligned.
    found: whether a face was found and aligned.
    landmarks: float32 ``[68, 2]`` (x, y) in the input's pixel coordinates, or None.
    box: the chosen face's detection box ``(left, top, right, bottom)`` in input pixels, or None.
    notice: a message for the user ('' when there is nothing to say).
    placement: photo -> aligned frame (`engine.photo.Placement`, side `size`), or None.
    """

    aligned: np.ndarray | None
    found: bool
    landmarks: np.ndarray | None
    box: tuple[int, int, int, int] | None
    notice: str
    placement: Placement | None = None


# ------------------------------------------------------------------------------------------ backend

@dataclass(frozen=True)
class _Backend:
    detector: Any
    predictor: Any


_load_lock = threading.Lock()
_run_lock = threading.Lock()
_backend: _Backend | str | None = None  # the loaded backend, or the reason it is unavailable


def _predictor_path() -> Path | None:
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    return Path(spec.origin).resolve().parent / "models" / PREDICTOR_FILE


def _load_backend() -> _Backend | str:
    try:
        import dlib  # noqa: PLC0415 - optional dependency, loaded on first use
    except Exception as exc:  # ImportError, or a broken binary wheel
        return f"automatic face alignment is unavailable (dlib could not be imported: {exc}): use the manual crop"
    path = _predictor_path()
    if path is None:
        return ("automatic face alignment is unavailable (the face-recognition-models package is not "
                "installed): use the manual crop")
    if not path.is_file():
        return f"automatic face alignment is unavailable ({PREDICTOR_FILE} is missing): use the manual crop"
    try:
        return _Backend(detector=dlib.get_frontal_face_detector(), predictor=dlib.shape_predictor(str(path)))
    except Exception as exc:  # a damaged model file
        return f"automatic face alignment is unavailable (could not load {PREDICTOR_FILE}: {exc}): use the manual crop"


def _get_backend() -> _Backend | str:
    global _backend
    if _backend is None:
        with _load_lock:
            if _backend is None:
                _backend = _load_backend()
    return _backend


def availability() -> tuple[bool, str]:
    """(True, '') when automatic alignment can run, else (False, a notice saying why). Loads the models."""
    backend = _get_backend()
    if isinstance(backend, str):
        return False, backend
    try:
        load_template()
    except (OSError, ValueError) as exc:
        return False, _template_notice(exc)
    return True, ""


# ----------------------------------------------------------------------------------------- template

@lru_cache(maxsize=4)
def _load_template_cached(path: str) -> np.ndarray:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    pts = np.asarray(data["landmarks68"], dtype=np.float64)
    if pts.shape != (NUM_LANDMARKS, 2) or not np.isfinite(pts).all() or pts.min() < 0 or pts.max() > 1:
        raise ValueError(f"{path}: 'landmarks68' must be {NUM_LANDMARKS} [x, y] pairs in [0, 1]")
    pts.setflags(write=False)
    return pts


def load_template(path: str | Path | None = None) -> np.ndarray:
    """The alignment template: float64 ``[68, 2]`` in [0, 1] (read-only, cached)."""
    try:
        return _load_template_cached(str(path or TEMPLATE_PATH))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path or TEMPLATE_PATH}: not a face template ({exc})") from exc


def _template_notice(exc: Exception) -> str:
    return f"automatic face alignment is unavailable (face template: {exc}): use the manual crop"


# ------------------------------------------------------------------------------------------ helpers

def _pick_face(boxes: list[tuple[float, float, float, float, float]], width: int, height: int) -> int:
    """Index of the most likely face: large, central and confidently detected.

    The HOG detector has false positives (badges, patterns) with low scores (a clear frontal face scores
    ~0.5-3), so the detector score weighs in next to size; centrality breaks near-ties.
    """
    cx, cy, half_diag = width / 2, height / 2, math.hypot(width, height) / 2

    def score(b: tuple[float, float, float, float, float]) -> float:
        side = math.sqrt(max(b[2] - b[0], 1.0) * max(b[3] - b[1], 1.0))
        dist = math.hypot((b[0] + b[2]) / 2 - cx, (b[1] + b[3]) / 2 - cy)
        confidence = min(max(0.25 + b[4], 0.25), 1.5)
        return side * (1.0 - 0.5 * min(dist / half_diag, 1.0)) * confidence

    return max(range(len(boxes)), key=lambda i: score(boxes[i]))


def _detect(detector: Any, rgb: np.ndarray) -> list[tuple[float, float, float, float, float]]:
    """Face boxes (left, top, right, bottom, detector score) in `rgb`'s pixel coordinates."""
    h, w = rgb.shape[:2]
    scale = 1.0
    img = rgb
    if max(h, w) > DETECT_MAX_SIDE:
        scale = DETECT_MAX_SIDE / max(h, w)
        img = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    rects, scores, _ = detector.run(img, 0, 0.0)
    if len(rects) == 0 and max(img.shape[:2]) <= UPSAMPLE_MAX_SIDE:
        rects, scores, _ = detector.run(img, 1, 0.0)
    sx, sy = w / img.shape[1], h / img.shape[0]
    return [(r.left() * sx, r.top() * sy, (r.right() + 1) * sx - 1, (r.bottom() + 1) * sy - 1, float(c))
            for r, c in zip(rects, scores)]


def detect_landmarks(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int], int] | str | None:
    """(landmarks [68, 2] float32, box, number of faces) for the chosen face; None when there is no face;
    a notice string when the backend is unavailable."""
    _check_rgb(rgb)
    backend = _get_backend()
    if isinstance(backend, str):
        return backend
    import dlib  # noqa: PLC0415 - importable: the backend loaded

    rgb = np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    with _run_lock:
        boxes = _detect(backend.detector, rgb)
        if not boxes:
            return None
        i = _pick_face(boxes, w, h)
        box = tuple(int(round(v)) for v in boxes[i][:4])
        shape = backend.predictor(rgb, dlib.rectangle(*box))
    pts = np.array([[shape.part(k).x, shape.part(k).y] for k in range(shape.num_parts)], dtype=np.float32)
    return pts, box, len(boxes)  # type: ignore[return-value]


def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected a uint8 RGB array [H, W, 3], got "
                         f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {getattr(rgb, 'shape', '')}")


def similarity_to_template(landmarks: np.ndarray, template: np.ndarray, size: int) -> np.ndarray | None:
    """2x3 similarity transform mapping `landmarks` (input pixels) onto ``template * size - 0.5``."""
    p = face_placement(landmarks, template, (1, 1), size)
    return None if p is None else p.matrix.astype(np.float32)


def warp_to_square(rgb: np.ndarray, M: np.ndarray, size: int) -> np.ndarray:
    """Warp `rgb` with the 2x3 transform `M` into ``[size, size, 3]``, anti-aliased when shrinking."""
    return warp(rgb, M, size).astype(np.uint8)


# ------------------------------------------------------------------------------------------- public

def align_face(rgb: np.ndarray, *, size: int = 256, template_path: str | Path | None = None) -> AlignResult:
    """Find the main face in `rgb` (uint8 RGB [H, W, 3]) and warp it onto the face64 training framing.

    Returns an `AlignResult`; never raises for a photo without a face or a missing dlib/model/template
    (``found=False`` and a notice). Raises ValueError for a non-uint8-RGB array or a bad `size`.
    """
    _check_rgb(rgb)
    if not isinstance(size, int) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be an integer in {MIN_SIZE}..{MAX_SIZE}, got {size!r}")
    try:
        template = load_template(template_path)
    except (OSError, ValueError) as exc:
        return AlignResult(None, False, None, None, _template_notice(exc))

    detected = detect_landmarks(rgb)
    if isinstance(detected, str):
        return AlignResult(None, False, None, None, detected)
    if detected is None:
        return AlignResult(None, False, None, None, NO_FACE_NOTICE)
    landmarks, box, n_faces = detected

    placement = face_placement(landmarks, template, rgb.shape[:2], size)
    if placement is None:
        return AlignResult(None, False, landmarks, box, "could not align the face found: use the manual crop")
    aligned = warp_to_square(rgb, placement.matrix, size)

    notices = []
    if n_faces > 1:
        notices.append(f"{n_faces} possible faces found: aligned the most likely one (large, central, clear)")
    face_px = box[2] - box[0] + 1
    if face_px < SMALL_FACE_PX:
        notices.append(f"the face is small ({face_px} px wide): the aligned crop may look soft")
    return AlignResult(aligned, True, landmarks, box, "; ".join(notices), placement)


__all__ = ["AlignResult", "NO_FACE_NOTICE", "TEMPLATE_PATH", "align_face", "availability", "detect_landmarks",
           "load_template", "similarity_to_template", "warp_to_square"]
