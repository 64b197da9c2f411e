"""Editor values and uploads -> what a run needs: photo, target, stroke/hole masks, the model's framing of a photo.

Gradio component values (image editor dicts, file paths, arrays, crop and task sliders) are read here, through
`app.uploads` (validation) and `app.photo_inputs` (where the model's square sits in a photo, face alignment);
every failure is an `UploadError` or a user error with a message for the visitor. Also the editor values the
app writes back (example sketches and masks, the blank or guided canvas).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import engine
from engine.photo import to_frame
from engine.tasks import strokes_from_image

from . import render
from .controls import number
from .model_cache import describe
from .photo_inputs import FramedPhoto, crop_box, frame_photo, outline, wants_alignment
from .settings import Settings
from .tabs import user_error, warn
from .uploads import UploadError, check_mask_coverage, fit_to_square, load_image, load_mask

CANVAS = 512
INPAINT_BRUSH = (255, 0, 140)
INPAINT_BRUSH_OPACITY = 0.6

Crop = tuple  # the crop sliders (centre x, centre y, side; percent; None each when not given)


def read_photo(source: Any, notices: list[str], *, settings: Settings, what: str = "photo") -> np.ndarray:
    """An upload -> uint8 RGB within the server's size limits (what was changed is added to `notices`)."""
    if source is None:
        raise UploadError(f"No {what} was provided. Please upload an image (or click an example) first.")
    loaded = load_image(source, max_pixels=settings.max_upload_pixels, resize_to_max_side=settings.max_upload_side)
    notices.extend(f"Your {what}: {n}." for n in loaded.notices)
    return loaded.rgb


def frame(rgb: np.ndarray, m: engine.EngineModel, notices: list[str], crop: Crop, *,
          painted: np.ndarray | None = None, align: bool = False) -> FramedPhoto:
    """The photo framed for the model: face aligned on face models (or when asked), else the crop sliders'."""
    align = align or wants_alignment(m.config.name, m.config.domain)
    return frame_photo(rgb, m.resolution, align=align, crop=crop_box(rgb.shape[:2], *crop), notices=notices,
                       warn=warn, painted=painted)


def framed_photo(image: Any, m: engine.EngineModel, notices: list[str], crop: Crop, *,
                 settings: Settings) -> FramedPhoto:
    """An upload framed for the model (colorize, deblur, super-resolution)."""
    return frame(read_photo(image, notices, settings=settings), m, notices, crop)


def reconstruct_input(image: Any, align_face: Any, m: engine.EngineModel, notices: list[str], crop: Crop, *,
                      settings: Settings, thumb: int) -> tuple[FramedPhoto, tuple[np.ndarray, np.ndarray] | None]:
    """An upload framed for reconstruction, and (photo, aligned face) at `thumb` px when a face was aligned."""
    rgb = read_photo(image, notices, settings=settings)
    framed = frame(rgb, m, notices, crop, align=bool(align_face))
    aligned = None
    if framed.placement.kind == "face":
        aligned = (fit_to_square(rgb, thumb)[0], to_frame(rgb, framed.placement.resized(thumb)))
    return framed, aligned


def blur_options(kernel_size: Any, sigma: Any) -> tuple[int, float]:
    """The deblur tab's kernel size (odd) and sigma (> 0)."""
    k = number("Kernel size", kernel_size, integer=True, minimum=1)
    if k % 2 == 0:
        raise user_error(f"The blur kernel size must be odd (3, 5, 7, …), got {k}.")
    s = number("Sigma", sigma, strictly_positive=True)
    return int(k), float(s)


def superres_factor(factor: Any, resolution: int) -> int:
    """The super-resolution factor, which must divide the model's resolution."""
    f = number("Factor", factor, integer=True, minimum=1)
    if resolution % f:
        raise user_error(f"Factor {f} does not divide the model's {resolution} px resolution; use 2, 4 or 8.")
    return int(f)


def _layers(editor: dict) -> list[Any]:
    return [layer for layer in (editor.get("layers") or []) if layer is not None]


def _painted(layers: list[Any], size: tuple[int, int], *, alpha_only: bool) -> np.ndarray:
    """Union of what was painted on the editor's layers, at `size` = (H, W).

    alpha_only: a pixel is painted when its alpha > 0 (scribble strokes). Otherwise `load_mask`'s rules:
    alpha > 0 for layers with transparency (what the browser sends), white = painted for an opaque
    black-and-white mask picture (what API callers usually have).
    """
    painted = np.zeros(size, dtype=bool)
    for layer in layers:
        arr = layer if isinstance(layer, np.ndarray) else None
        if alpha_only and arr is not None and arr.ndim == 3 and arr.shape[2] == 4:
            painted |= load_mask(arr[..., 3] > 0, size=size)
        else:
            painted |= load_mask(layer, size=size)
    return painted


def _editor(editor: Any, what: str) -> dict:
    if editor is None:
        return {}
    if not isinstance(editor, dict):
        raise UploadError(f"The {what} could not be read (expected an image editor value with 'background', "
                          "'layers' and 'composite'). Please draw again.")
    return editor


def scribble_input(editor: Any, res: int, notices: list[str], *,
                   settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Sketch -> (stroke colours, stroke mask) at `res`. Strokes = painted layers' alpha; colours = composite."""
    editor = _editor(editor, "sketch")
    layers = _layers(editor)
    base = editor.get("composite") if editor.get("composite") is not None else editor.get("background")
    if layers:
        first = np.asarray(layers[0]) if isinstance(layers[0], np.ndarray) else None
        if base is not None:
            colours = read_photo(base, notices, settings=settings, what="sketch")
        elif first is not None and first.ndim == 3 and first.shape[2] == 4:
            colours = render.flatten_over_white([np.asarray(x) for x in layers], first.shape[:2])
        else:
            raise UploadError("The sketch has layers but no picture to take the colours from. Please draw again.")
        strokes = _painted(layers, colours.shape[:2], alpha_only=True)
    elif base is not None:  # a plain picture (API callers, examples): every non-white pixel is a stroke
        colours = read_photo(base, notices, settings=settings, what="sketch")
        strokes = strokes_from_image(colours)
    else:
        raise UploadError("Nothing is drawn yet. Pick a colour, draw a few strokes, then press Run.")
    if not strokes.any():
        raise UploadError("Nothing is drawn yet. Pick a colour, draw a few strokes, then press Run.")
    colours, strokes = render.center_square(colours), render.center_square(strokes)
    if not strokes.any():
        raise UploadError("All strokes are outside the central square that is used. Please draw in the middle.")
    return render.shrink_strokes(colours, strokes, res)


def inpaint_input(editor: Any, m: engine.EngineModel, notices: list[str], crop: Crop, *,
                  settings: Settings) -> tuple[np.ndarray, np.ndarray, FramedPhoto]:
    """Editor -> (target, hole at the model's resolution, framed photo). Photo = background (never the composite,
    which shows the paint); the hole is warped into the model's frame like the photo."""
    editor = _editor(editor, "photo and mask")
    photo = read_photo(editor.get("background"), notices, settings=settings)
    hole = _painted(_layers(editor), photo.shape[:2], alpha_only=False)
    check_mask_coverage(hole, what="fill in")
    framed = frame(photo, m, notices, crop, painted=hole)
    hole_frame = framed.painted_in_frame()
    if not hole_frame.any():
        raise UploadError("The painted region is outside the square the model sees. Please paint on the face "
                          "(or move the crop square over the region).")
    if framed.painted_outside():
        notices.append("Part of the painted region lies outside the square the model sees; that part was ignored.")
    return framed.target(), hole_frame, framed


def crop_view(source: Any, crop: Crop, model_choice: str | None, *, settings: Settings) -> np.ndarray | None:
    """The photo with the square the model will see drawn on it (the aligned face on face models); None when
    there is no readable photo."""
    if isinstance(source, dict):
        source = source.get("background")
    if source is None:
        return None
    try:
        rgb = load_image(source, max_pixels=settings.max_upload_pixels,
                         resize_to_max_side=settings.max_upload_side).rgb
    except UploadError:
        return None
    info = describe(model_choice, settings)
    align = wants_alignment(Path(str(model_choice or "")).name, info.domain)
    framed = frame_photo(rgb, info.resolution or 64, align=align, notices=[], warn=lambda _: None,
                         crop=crop_box(rgb.shape[:2], *crop))
    return outline(rgb, framed.placement)


def sketch_canvas(guide: np.ndarray | None) -> dict:
    """A blank sketch canvas (editor value), with `guide` (e.g. the model's average picture) faintly underneath."""
    blank_layer = np.zeros((CANVAS, CANVAS, 4), np.uint8)
    if guide is None:
        white = np.full((CANVAS, CANVAS, 3), 255, np.uint8)
        return {"background": white, "layers": [blank_layer], "composite": white}
    faint = render.faint(fit_to_square(guide, CANVAS)[0] if guide.shape[0] > CANVAS else
                         render.enlarge(guide, CANVAS))
    return {"background": faint, "layers": [blank_layer], "composite": faint}


def scribble_example(sketch: Any) -> dict | None:
    """An example stroke picture -> an editable stroke layer on a white canvas (None: nothing to show)."""
    editor = sketch if isinstance(sketch, dict) else {"background": sketch}
    base = editor.get("composite") if editor.get("composite") is not None else editor.get("background")
    if base is None:
        return None
    try:
        rgb = load_image(base).rgb
    except UploadError as exc:
        raise user_error(str(exc)) from None
    rgb = fit_to_square(rgb, CANVAS)[0] if rgb.shape[:2] != (CANVAS, CANVAS) else rgb
    strokes = strokes_from_image(rgb)
    white = np.full_like(rgb, 255)
    layer = render.to_rgba(rgb, strokes)
    return {"background": white, "layers": [layer], "composite": render.paste(white, rgb, ~strokes)}


def inpaint_example(photo: Any, mask: Any) -> dict:
    """An example (photo, mask: white = fill) -> editor value with the mask as an editable painted layer."""
    try:
        rgb = load_image(photo).rgb
        hole = load_mask(mask, size=rgb.shape[:2]) if mask is not None else np.zeros(rgb.shape[:2], bool)
    except UploadError as exc:
        raise user_error(str(exc)) from None
    if rgb.shape[0] == rgb.shape[1] < CANVAS // 2:  # tiny examples (64 px samples) would give a tiny canvas
        rgb = render.enlarge(rgb, CANVAS)
        hole = render.enlarge(hole.astype(np.uint8), CANVAS) > 0
    layer = render.solid_layer(hole, INPAINT_BRUSH, INPAINT_BRUSH_OPACITY)
    composite = render.flatten_over_white([render.to_rgba(rgb, np.full(rgb.shape[:2], 255, np.uint8)), layer],
                                          rgb.shape[:2])
    return {"background": rgb, "layers": [layer], "composite": composite}
