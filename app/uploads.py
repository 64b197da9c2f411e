"""The one place where untrusted uploads become engine inputs.

Everything a user hands the app (image files, bytes, arrays from Gradio components, painted mask layers,
crop boxes, model paths) passes through this module before it reaches `engine/`.

Contract
--------
Outputs follow `engine.types`: images are C-contiguous numpy `uint8` arrays `[H, W, 3]` (RGB, 0..255);
masks are numpy `bool` arrays `[H, W]`. Here a mask means **True = painted by the user**; converting to
the engine's *known* polarity is `engine.types.known_from_fill_mask` / `known_from_strokes`' job.

Sizes in messages and notices are written ``WIDTHxHEIGHT`` (as image viewers do); sizes passed as
arguments (`load_mask(size=...)`) are ``(height, width)``, i.e. `rgb.shape[:2]`.

Errors
------
A bad upload raises `UploadError` (a `ValueError`) whose message is meant for the end user: it says what
is wrong and what to do about it, and never contains a traceback. `load_image` and `load_mask` turn
*every* failure caused by the upload into `UploadError`. A caller breaking the API contract (for
example passing a float image to `fit_to_square`, or a non-positive `max_pixels`) gets a plain
`ValueError`/`TypeError`: that is a bug to fix, not a message for users.

Images (`load_image`)
---------------------
- The pixel count is checked from the header (`Image.open(...).size`) *before* anything is decoded:
  more than `max_pixels` is refused (decompression bombs). Pillow's own `DecompressionBombError` (and its
  warning, when a warnings filter turns it into an error) is caught and reported the same way. Warning
  filters are not changed here because that is process-global and not thread-safe.
- Truncated or damaged files are refused: `PIL.ImageFile.LOAD_TRUNCATED_IMAGES` is left False (never
  set by this module), so Pillow raises instead of padding with grey, and that error is reported.
- Only the PNG, JPEG, GIF, WebP, BMP and TIFF decoders are tried (never e.g. EPS, which Pillow renders
  with Ghostscript).
- Empty files, non-images (e.g. a text file renamed ``.png``) and images smaller than
  `MIN_SIDE` x `MIN_SIDE` pixels are refused.
- Conversions (each that changes what the user sees adds a notice): EXIF orientation applied
  (`ImageOps.exif_transpose`); animated/multi-frame images -> first frame; palette, grayscale, 1-bit,
  LA, CMYK, YCbCr -> RGB; 16-bit (``I;16``, ``I``) scaled to 8 bits (value / 257); transparency
  composited over white; long side larger than `resize_to_max_side` -> downscaled (Lanczos).
- numpy arrays: ``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` (RGB), ``[H, W, 4]`` (RGBA). ``bool`` and
  ``uint8`` as is; ``uint16`` is 16-bit (/257); other integer arrays are taken as 0..255 (or 0..65535,
  scaled, when larger values occur); float arrays are 0..1 when their maximum is <= 1, else 0..255, and
  values outside the range are clipped (notice). NaN/infinity is refused.

Masks (`load_mask`)
-------------------
What counts as *painted*:
- an image or array with an alpha channel that has some transparency (a Gradio ImageEditor layer):
  alpha > 0 is painted, whatever the brush colour;
- otherwise (RGB, grayscale, fully opaque RGBA): luminance L > 127 of 255 (i.e. > 50 %) is painted: a
  mask is white strokes on black;
- ``bool`` arrays as is; integer arrays holding only 0 and 1 are binary (1 = painted); other arrays are
  thresholded at 50 % of their range (uint8: > 127, uint16: > 32767, float 0..1: > 0.5, float 0..255:
  > 127.5).
- ``None`` (nothing painted / no layer) gives an all-False mask; `check_mask_coverage` then explains.
A mask whose size differs from the image's is resized (nearest neighbour) when the aspect ratios agree
within 1 % (e.g. it was painted on the full-size upload and the image was downscaled), else refused.
"""
from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

MIN_SIDE = 16
"""Smallest accepted width and height in pixels (images and crops)."""
MAX_COVERAGE = 0.995
"""A mask painting at least this fraction of the image is refused by `check_mask_coverage`."""
MODEL_SUFFIXES = (".safetensors", ".json", ".pkl", ".pt", ".pth")
"""File types `safe_model_path` accepts (the ones `models.loader` dispatches on)."""
SQUARE_MODES = ("center-crop", "pad")
_MASK_MAX_PIXELS = 40_000_000  # mask files are checked from the header like images (decompression bombs)

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_FORMATS_HINT = "PNG, JPEG, WebP, GIF, BMP or TIFF"
# Decoders tried on uploads. Everything else (EPS/PDF via Ghostscript, exotic formats) is refused.
_ALLOWED_FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")  # JPEG covers MPO

Source = str | os.PathLike[str] | bytes | np.ndarray | Image.Image


class UploadError(ValueError):
    """An upload that cannot be used. The message is for end users: what is wrong and what to do."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded upload: `rgb` uint8 `[H, W, 3]` plus notices about what was changed on the way in."""

    rgb: np.ndarray
    notices: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------- images

def load_image(source: Source, *, max_pixels: int = 40_000_000,
               resize_to_max_side: int = 2048) -> LoadedImage:
    """Decode an untrusted upload (path, bytes, numpy array or PIL image) into RGB uint8 `[H, W, 3]`.

    Raises `UploadError` (message for the user) for anything unusable; see the module docstring for the
    full list of checks and conversions. `max_pixels` bounds width*height *before* decoding;
    `resize_to_max_side` bounds the long side of the result (larger images are downscaled, with a notice).
    """
    _check_positive_int("max_pixels", max_pixels)
    _check_positive_int("resize_to_max_side", resize_to_max_side)
    if resize_to_max_side < MIN_SIDE:
        raise ValueError(f"resize_to_max_side must be >= {MIN_SIDE}, got {resize_to_max_side}")
    try:
        if source is None:
            raise UploadError("No image was provided. Please upload an image first.")
        if isinstance(source, np.ndarray):
            rgb, notices = _image_from_array(source, max_pixels=max_pixels)
            full_wh = (rgb.shape[1], rgb.shape[0])
        elif isinstance(source, Image.Image):
            _check_dimensions(*source.size, max_pixels=max_pixels, max_side=resize_to_max_side)
            rgb, notices, full_wh = _decode_pil(source, draft_to=None)
        else:
            with _open_untrusted(source) as im:
                w, h = im.size
                _check_dimensions(w, h, max_pixels=max_pixels, max_side=resize_to_max_side)
                # The long side is the same before and after EXIF rotation, so this bound is safe.
                rgb, notices, full_wh = _decode_pil(im, draft_to=_downscaled_size(w, h, resize_to_max_side))
    except UploadError as e:
        log.info("image upload refused: %s", e)
        raise
    except MemoryError:
        log.warning("out of memory while decoding an upload", exc_info=True)
        raise UploadError("The image is too large to process. Please upload a smaller image "
                          f"(at most {resize_to_max_side} pixels on the long side works best).") from None
    except Exception as e:  # noqa: BLE001 - trust boundary: no traceback may reach the user
        log.warning("unexpected failure while decoding an upload", exc_info=True)
        raise UploadError("This image could not be read. Please save it again as PNG or JPEG and "
                          "upload it again.") from e
    # full_wh: upright size before any JPEG draft decoding, so the notice reports what the user uploaded.
    target = _downscaled_size(*full_wh, resize_to_max_side)
    if target is not None:
        if (rgb.shape[1], rgb.shape[0]) != target:
            rgb = _resize(rgb, target)
        notices.append(f"downscaled from {full_wh[0]}x{full_wh[1]} to {target[0]}x{target[1]} "
                       f"(long side limited to {resize_to_max_side} pixels)")
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    for n in notices:
        log.info("upload notice: %s", n)
    return LoadedImage(rgb=rgb, notices=tuple(notices))


def _check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _mp(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _check_dimensions(w: int, h: int, *, max_pixels: int, max_side: int | None) -> None:
    """Refuse images that are too small, too large (pixel count) or too thin to survive downscaling."""
    if w < MIN_SIDE or h < MIN_SIDE:
        raise UploadError(f"The image is only {w}x{h} pixels, which is too small to edit. Please upload an "
                          f"image of at least {MIN_SIDE}x{MIN_SIDE} pixels.")
    if w * h > max_pixels:
        raise UploadError(f"The image is {w}x{h} pixels ({_mp(w * h)}), more than the limit of "
                          f"{_mp(max_pixels)}. Please downscale it (for example to 2048 pixels on the long "
                          "side) and upload it again.")
    if max_side is not None:
        target = _downscaled_size(w, h, max_side)
        if target is not None and min(target) < MIN_SIDE:
            raise UploadError(f"The image is {w}x{h} pixels: too long and thin to edit (it would shrink to "
                              f"{target[0]}x{target[1]}). Please crop it closer to a square and upload it "
                              "again.")


def _downscaled_size(w: int, h: int, max_side: int) -> tuple[int, int] | None:
    """(width, height) with the long side == max_side, or None when no downscaling is needed."""
    if max(w, h) <= max_side:
        return None
    scale = max_side / max(w, h)
    return (max(1, round(w * scale)), max(1, round(h * scale)))


@contextmanager
def _open_untrusted(source: str | os.PathLike[str] | bytes) -> Iterator[Image.Image]:
    """`Image.open` a path or bytes, translating every failure into a friendly `UploadError`.

    Only the header is read here; the caller decodes inside the `with` block.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise UploadError("The uploaded file is empty (0 bytes). Please choose the image again; the "
                              "upload may not have finished.")
        fp: str | io.BytesIO = io.BytesIO(data)
        subject = "The uploaded file"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        subject = f"The file '{path.name}'"
        try:
            exists, size = path.is_file(), (path.stat().st_size if path.is_file() else -1)
        except (OSError, ValueError) as e:  # permissions, embedded NUL, name too long
            raise UploadError(f"{subject} could not be opened. Please upload it again.") from e
        if not exists:
            raise UploadError(f"{subject} could not be found. Please upload it again.")
        if size == 0:
            raise UploadError(f"{subject} is empty (0 bytes). Please choose the image again; the upload may "
                              "not have finished.")
        fp = str(path)
    else:
        raise UploadError(f"Unsupported upload type ({type(source).__name__}). Please upload an image file "
                          f"({_FORMATS_HINT}).")
    try:
        im = Image.open(fp, formats=_ALLOWED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UploadError(f"{subject} holds an image that is far too large (Pillow refused it as a possible "
                          "'decompression bomb'). Please downscale it (for example to 2048 pixels on the "
                          "long side) and upload it again.") from e
    except UnidentifiedImageError as e:
        raise UploadError(f"{subject} is not an image that can be read (it may be a "
                          f"different kind of file renamed). Please upload a {_FORMATS_HINT} image.") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise UploadError(f"{subject} is damaged and could not be read. Please export "
                          "or download it again and re-upload it.") from e
    try:
        yield im
    finally:
        im.close()


def _decode_pil(im: Image.Image, *,
                draft_to: tuple[int, int] | None) -> tuple[np.ndarray, list[str], tuple[int, int]]:
    """Decode the first frame of an opened image into uint8 RGB, applying EXIF orientation.

    Returns (rgb, notices, upright (width, height) of the full image). With `draft_to`, a JPEG may be
    decoded at a reduced scale that is still at least `draft_to`.
    """
    notices: list[str] = []
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was set True elsewhere in this process: truncated "
                    "uploads cannot be detected")
    full_w, full_h = im.size
    if getattr(im, "is_animated", False):  # (not n_frames: counting frames walks the whole file)
        im.seek(0)
        notices.append("animated/multi-frame image: first frame used")
    if draft_to is not None and im.format == "JPEG":
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (never below the target) to save memory and time.
        im.draft(None, draft_to)
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise UploadError("The image is far too large to decode. Please downscale it (for example to "
                          "2048 pixels on the long side) and upload it again.") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # With LOAD_TRUNCATED_IMAGES False, a file cut short raises "image file is truncated" here.
        what = "incomplete (the file ends early)" if "truncat" in str(e).lower() else "damaged"
        raise UploadError(f"The image file is {what} and could not be decoded. Please export or download "
                          "it again and re-upload it.") from e
    try:
        oriented = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a malformed EXIF block must not make the image unusable
        log.info("ignoring unreadable EXIF orientation", exc_info=True)
        notices.append("the camera orientation tag could not be read; the image is shown as stored")
        oriented = im
    else:
        orientation = im.getexif().get(0x0112, 1)
        if orientation in (2, 3, 4, 5, 6, 7, 8):
            notices.append(f"rotated/flipped upright according to its EXIF orientation tag ({orientation})")
        if orientation in (5, 6, 7, 8):  # transposes swap width and height
            full_w, full_h = full_h, full_w
    rgb, more = _pil_to_rgb(oriented, file_format=im.format)
    return rgb, notices + more, (full_w, full_h)


def _pil_to_rgb(im: Image.Image, *, file_format: str | None) -> tuple[np.ndarray, list[str]]:
    mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode == "I" and file_format == "PNG":  # a 16-bit PNG decoded by an older Pillow
            arr = arr.astype(np.uint16) if arr.min() >= 0 and arr.max() <= 65535 else arr
        return _image_from_array(arr, max_pixels=None)
    notices: list[str] = []
    if mode == "P":
        mode = "RGBA" if "transparency" in im.info else "RGB"
        im = im.convert(mode)
    elif mode == "1":
        im = im.convert("L")
        mode = "L"
    elif mode == "CMYK":
        im = im.convert("RGB")
        mode = "RGB"
        notices.append("converted from CMYK to RGB (colours may differ slightly from print software)")
    if mode in _ALPHA_MODES:
        rgba = np.asarray(im.convert("RGBA"))
        rgb, more = _composite_on_white(rgba)
        return rgb, notices + more
    if mode == "L":
        return np.repeat(np.asarray(im)[:, :, None], 3, axis=2), notices
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as e:
            raise UploadError(f"The image uses the colour mode {im.mode!r}, which cannot be converted to "
                              "RGB. Please save it as an ordinary RGB PNG or JPEG and upload it again.") from e
    return np.asarray(im), notices


def _composite_on_white(rgba: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """uint8 RGBA (straight alpha) -> uint8 RGB over a white background."""
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[:, :, :3]), []
    a = alpha.astype(np.float32)[:, :, None] / 255.0
    rgb = rgba[:, :, :3].astype(np.float32) * a + 255.0 * (1.0 - a)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8), ["transparent areas placed on a white background"]


def _image_from_array(arr: np.ndarray, *, max_pixels: int | None) -> tuple[np.ndarray, list[str]]:
    """numpy HxW / HxWx1 / HxWx3 / HxWx4 array of any numeric dtype -> uint8 RGB plus notices."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise UploadError(f"The image data has an unsupported type ({arr.dtype}). Please upload an ordinary "
                          "8-bit image.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise UploadError(f"The image data has shape {arr.shape}; expected height x width (grayscale), "
                          "height x width x 3 (RGB) or height x width x 4 (RGBA). Please upload an ordinary "
                          "image.")
    h, w = arr.shape[:2]
    if max_pixels is not None:
        _check_dimensions(w, h, max_pixels=max_pixels, max_side=None)
    u8, notices = _to_uint8(arr)
    if u8.ndim == 2:
        return np.repeat(u8[:, :, None], 3, axis=2), notices
    if u8.shape[2] == 4:
        rgb, more = _composite_on_white(u8)
        return rgb, notices + more
    return u8, notices


def _to_uint8(arr: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Scale an image array to uint8 following the module's rules (see the module docstring)."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255, []
    if arr.dtype == np.uint8:
        return arr, []
    if arr.size == 0:
        raise UploadError("The image is empty. Please upload an image with some pixels in it.")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise UploadError("The image contains invalid values (NaN or infinity). Please export it again "
                              "as an ordinary 8-bit PNG or JPEG.")
        f = arr.astype(np.float64)
        if f.max() <= 1.0:
            f = f * 255.0
        notices = []
        if f.min() < 0.0 or f.max() > 255.0:
            notices.append("pixel values outside the displayable range were clipped")
        return np.clip(np.rint(f), 0, 255).astype(np.uint8), notices
    # integers
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
        return _from_16bit(arr), ["16-bit image converted to 8 bits per channel"]
    lo, hi = int(arr.min()), int(arr.max())
    if lo >= 0 and hi <= 255:
        return arr.astype(np.uint8), []
    if lo >= 0 and hi <= 65535:
        return _from_16bit(arr), ["16-bit image converted to 8 bits per channel"]
    raise UploadError(f"The image has pixel values from {lo} to {hi}, outside the 8/16-bit range. Please "
                      "export it again as an ordinary 8-bit PNG or JPEG.")


def _from_16bit(arr: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with rounding (65535 -> 255, 32768 -> 128), not clipping."""
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _resize(rgb: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """Pillow resize of uint8 RGB: Lanczos when shrinking, bicubic when enlarging."""
    h, w = rgb.shape[:2]
    shrinking = size_wh[0] <= w and size_wh[1] <= h
    resample = Image.Resampling.LANCZOS if shrinking else Image.Resampling.BICUBIC
    out = Image.fromarray(np.ascontiguousarray(rgb)).resize(size_wh, resample, reducing_gap=3.0 if shrinking else None)
    return np.asarray(out).copy()


# ---------------------------------------------------------------------------------------------- masks

def load_mask(source: Source | None, *, size: tuple[int, int]) -> np.ndarray:
    """Turn a painted layer / mask upload into bool `[H, W]`, True where the user painted.

    `size` is the `(height, width)` of the image the mask belongs to (`rgb.shape[:2]`). Rules for what
    counts as painted are in the module docstring. A mask of a different size is resized with nearest
    neighbour when the aspect ratios agree within 1 %, otherwise `UploadError` names both sizes.
    """
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)):
        raise ValueError(f"size must be (height, width) of positive ints, got {size!r}")
    height, width = int(size[0]), int(size[1])
    try:
        if source is None:
            return np.zeros((height, width), dtype=bool)
        if isinstance(source, np.ndarray):
            painted = _mask_from_array(source)
        elif isinstance(source, Image.Image):
            painted = _mask_from_pil(source)
        else:
            with _open_untrusted(source) as im:
                w, h = im.size
                if w * h > _MASK_MAX_PIXELS:
                    raise UploadError(f"The mask is {w}x{h} pixels ({_mp(w * h)}), far larger than the image "
                                      f"({width}x{height}). Please paint the mask on the uploaded image.")
                if getattr(im, "is_animated", False):
                    im.seek(0)
                try:
                    im.load()
                    im = ImageOps.exif_transpose(im)
                except (OSError, SyntaxError, ValueError, EOFError) as e:
                    raise UploadError("The mask file is damaged or incomplete. Please paint or export the "
                                      "mask again.") from e
                painted = _mask_from_pil(im)
    except UploadError as e:
        log.info("mask upload refused: %s", e)
        raise
    except Exception as e:  # noqa: BLE001 - trust boundary: no traceback may reach the user
        log.warning("unexpected failure while reading a mask", exc_info=True)
        raise UploadError("The mask could not be read. Please paint it again.") from e
    return _fit_mask(painted, height=height, width=width)


def _mask_from_pil(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "1":
        return np.asarray(im, dtype=bool).copy()
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        return _mask_from_array(np.asarray(im))
    if mode in _ALPHA_MODES:
        return _mask_from_array(np.asarray(im.convert("RGBA")))
    if mode not in ("L", "RGB"):
        try:
            im = im.convert("RGB")
        except ValueError as e:
            raise UploadError(f"The mask uses the colour mode {im.mode!r}, which cannot be read. Please save "
                              "it as a black-and-white PNG (white = painted).") from e
    return _mask_from_array(np.asarray(im))


def _mask_from_array(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise UploadError(f"The mask data has an unsupported type ({arr.dtype}). Please paint the mask again.")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))) or arr.size == 0:
        raise UploadError(f"The mask data has shape {arr.shape}; expected height x width (optionally x 3 "
                          "or x 4 channels). Please paint the mask again.")
    if arr.dtype == np.bool_:
        level = arr.astype(np.float32)
    else:
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise UploadError("The mask contains invalid values (NaN or infinity). Please paint it again.")
        lo, hi = arr.min(), arr.max()
        if arr.dtype.kind in "iu" and lo >= 0 and hi <= 1:
            level = arr.astype(np.float32)                       # binary 0/1
        elif arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
            level = arr.astype(np.float32) / 65535.0             # 16-bit
        elif arr.dtype.kind in "iu":
            level = arr.astype(np.float32) / (255.0 if hi <= 255 else 65535.0)
        elif hi <= 1.0:
            level = arr.astype(np.float32)                       # float 0..1
        else:
            level = arr.astype(np.float32) / 255.0               # float 0..255
    if level.ndim == 2:
        return level > 0.5
    if level.shape[2] == 4:
        alpha = level[:, :, 3]
        if alpha.min() < 1.0:                                    # a layer with transparency
            return alpha > 0.0
        level = level[:, :, :3]
    lum = level[:, :, 0] * 0.299 + level[:, :, 1] * 0.587 + level[:, :, 2] * 0.114
    return lum > 0.5


def _fit_mask(painted: np.ndarray, *, height: int, width: int) -> np.ndarray:
    h, w = painted.shape
    if (h, w) == (height, width):
        return np.ascontiguousarray(painted, dtype=bool)
    ratio = (w / h) / (width / height)
    if abs(ratio - 1.0) > 0.01:
        raise UploadError(f"The mask is {w}x{h} pixels but the image is {width}x{height} pixels, and their "
                          "shapes differ. Please paint the mask on the uploaded image (or upload a mask of "
                          "the same size).")
    log.info("resizing mask %dx%d to %dx%d (nearest neighbour)", w, h, width, height)
    small = Image.fromarray(painted.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(small) > 127


def check_mask_coverage(painted: np.ndarray, *, what: str, max_fraction: float = MAX_COVERAGE) -> None:
    """Refuse a mask that paints nothing, or (almost) everything (>= `max_fraction`, default 99.5 %).

    `what` completes "paint the region to ...", e.g. "fill in" or "recolour".
    """
    painted = np.asarray(painted)
    if painted.ndim != 2 or painted.size == 0:
        raise ValueError(f"painted must be a non-empty [H, W] mask, got shape {painted.shape}")
    fraction = float(np.count_nonzero(painted)) / painted.size
    if fraction == 0.0:
        raise UploadError(f"Nothing is painted yet. Please paint the region to {what}, then try again.")
    if fraction >= max_fraction:
        raise UploadError(f"The painted area covers {fraction:.1%} of the image, i.e. (almost) all of it. "
                          f"Please paint only the region to {what} and leave the rest of the picture "
                          "unpainted.")


# -------------------------------------------------------------------------------------- crop / square

def _check_rgb(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("expected a uint8 RGB array [H, W, 3] (use load_image first), got "
                         f"{getattr(rgb, 'dtype', type(rgb).__name__)} {getattr(rgb, 'shape', '')}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected a non-empty image, got shape {rgb.shape}")


def fit_to_square(rgb: np.ndarray, resolution: int, *,
                  mode: Literal["center-crop", "pad"] = "center-crop",
                  pad_color: tuple[int, int, int] = (255, 255, 255)) -> tuple[np.ndarray, str]:
    """Make `rgb` a `resolution` x `resolution` square; returns `(image, notice)`.

    "center-crop" keeps the central square (the long side is cut); "pad" keeps the whole picture and fills
    the bars with `pad_color` (white, matching how transparency is handled). Downscaling uses Lanczos,
    enlarging bicubic. The notice says what was done, e.g.
    "centre-cropped 640x480 to 480x480 and resized to 64x64".
    """
    _check_rgb(rgb)
    _check_positive_int("resolution", resolution)
    if mode not in SQUARE_MODES:
        raise ValueError(f"mode must be one of {SQUARE_MODES}, got {mode!r}")
    h, w = rgb.shape[:2]
    steps: list[str] = []
    if mode == "center-crop":
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        square = rgb[top:top + s, left:left + s]
        if (h, w) != (s, s):
            steps.append(f"centre-cropped {w}x{h} to {s}x{s}")
        if s != resolution:
            square = _resize(square, (resolution, resolution))
            verb = "resized" if s > resolution else "enlarged"
            steps.append(f"{verb} to {resolution}x{resolution}" if steps
                         else f"{verb} {w}x{h} to {resolution}x{resolution}")
    else:
        scale = resolution / max(h, w)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        inner = rgb
        if (nw, nh) != (w, h):
            inner = _resize(rgb, (nw, nh))
            steps.append(f"{'resized' if scale < 1 else 'enlarged'} {w}x{h} to {nw}x{nh}")
        square = np.empty((resolution, resolution, 3), dtype=np.uint8)
        square[:] = np.asarray(pad_color, dtype=np.uint8)
        top, left = (resolution - nh) // 2, (resolution - nw) // 2
        square[top:top + nh, left:left + nw] = inner
        if (nw, nh) != (resolution, resolution):
            colour = "white" if tuple(pad_color) == (255, 255, 255) else f"colour {tuple(pad_color)}"
            steps.append(f"padded to {resolution}x{resolution} with {colour} bars" if steps
                         else f"padded {w}x{h} to {resolution}x{resolution} with {colour} bars")
    notice = " and ".join(steps) if steps else f"already {resolution}x{resolution}; used as is"
    return np.ascontiguousarray(square), notice


def crop_box(rgb: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """Manual crop `box=(left, top, right, bottom)` in pixels (right/bottom exclusive), validated.

    Coordinates are rounded to whole pixels. Raises `UploadError` when the box is malformed, not inside
    the image, or smaller than `MIN_SIDE` x `MIN_SIDE`.
    """
    _check_rgb(rgb)
    h, w = rgb.shape[:2]
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise UploadError("The crop box could not be read. Please draw the crop again.") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise UploadError("The crop box could not be read (it needs left, top, right and bottom). Please "
                          "draw the crop again.")
    left, top, right, bottom = (int(round(v)) for v in values)
    if left < 0 or top < 0 or right > w or bottom > h:
        raise UploadError(f"The crop box ({left}, {top}, {right}, {bottom}) reaches outside the {w}x{h} image. "
                          "Please draw the crop inside the picture.")
    if right - left < MIN_SIDE or bottom - top < MIN_SIDE:
        raise UploadError(f"The crop is {max(right - left, 0)}x{max(bottom - top, 0)} pixels; it must be at "
                          f"least {MIN_SIDE}x{MIN_SIDE}. Please draw a larger crop.")
    return np.ascontiguousarray(rgb[top:bottom, left:right])


# ---------------------------------------------------------------------------------------- model paths

def safe_model_path(path: str | os.PathLike[str], *, allowed_dirs: Sequence[Path]) -> Path:
    """Resolve a user-given model path (symlinks followed) and return it only if it is safe to load.

    Refused with `UploadError`: empty paths, suffixes other than `MODEL_SUFFIXES`, anything that resolves
    outside every folder in `allowed_dirs` (after resolving their symlinks too), and missing files. The
    containment check comes before the existence check, so nothing is revealed about files elsewhere.
    Relative paths are relative to the current working directory.
    """
    shown = str(path).strip() if path is not None else ""
    if not shown:
        raise UploadError("No model file was given. Please choose one of the bundled models or enter the "
                          "path of a model file.")
    name = Path(shown).name or shown
    if not allowed_dirs:
        raise UploadError("Loading models from a path is disabled here. Please choose one of the bundled "
                          "models.")
    folders = ", ".join(str(d) for d in allowed_dirs)
    try:
        resolved = Path(shown).resolve(strict=False)
        roots = [Path(d).resolve(strict=False) for d in allowed_dirs]
    except (OSError, ValueError, RuntimeError) as e:  # NUL bytes, symlink loops, over-long names
        raise UploadError(f"The model path {name!r} is not valid. Please enter the path of a model file "
                          f"inside: {folders}.") from e
    for suffix in {Path(shown).suffix.lower(), resolved.suffix.lower()}:
        if suffix not in MODEL_SUFFIXES:
            raise UploadError(f"The file {name!r} is not a model file: its name must end in one of "
                              f"{', '.join(MODEL_SUFFIXES)}. Please choose a model file.")
    if not any(resolved.is_relative_to(root) for root in roots):
        log.warning("refused model path outside the allowed folders: %r -> %s", shown, resolved)
        raise UploadError(f"The model file {name!r} is outside the folders models may be loaded from. "
                          f"Please put it inside one of: {folders}.")
    if not resolved.is_file():
        raise UploadError(f"No model file {name!r} was found. Please check the name; model files must be "
                          f"inside one of: {folders}.")
    return resolved

