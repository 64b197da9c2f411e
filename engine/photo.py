"""Photo geometry: a user's photo <-> the model's square frame, and compositing a result back at full size.

A `Placement` is a similarity transform (2x3, photo pixels -> frame pixels; pixel centres at integers, OpenCV's
convention) plus the frame side. It comes from a square crop box (`crop_placement`) or from face landmarks
(`face_placement`, onto the face template). `to_frame` / `mask_to_frame` warp a photo / painted mask into the
frame (anti-aliased; an axis-aligned crop is cut and resized exactly like `imageio.fit_square`), `from_frame`
warps a frame-sized image back. `composite` pastes a result into the photo at the photo's own resolution with a
feathered seam: only the painted region for inpaint, the frame's footprint otherwise; `colorize_composite` keeps
the photo's own luminance (BT.601 Y, the grayscale operator's weights) and takes only chroma from the result.
Photos are uint8 RGB `[H, W, 3]`, masks bool `[H, W]` (True = painted); see engine/types.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .imageio import PAINTED_SHARE, coverage
from .types import EngineError

FEATHER_SHARE = 0.04
"""Seam width as a share of the frame's side in the photo (a 1000 px face frame blends over ~40 px)."""
CHROMA_SMOOTH = 1 / 32
"""Colorize: the result's chroma is smoothed with a Gaussian of this share of the frame's side (2 px at 64 px)
before it is transferred: colour is low-bandwidth, and on the face64 gallery this lowered the chroma error
(RMS Cb/Cr, 4 photos) from 11.03 to 10.42 and removed small colour spots."""
Y_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True, eq=False)
class CropBox:
    """A square in photo pixels: columns x..x+side-1, rows y..y+side-1."""

    x: int
    y: int
    side: int


@dataclass(frozen=True, eq=False)
class Placement:
    """Where the model's frame sits in a photo. matrix: float64 2x3, photo pixel -> frame pixel."""

    matrix: np.ndarray
    size: int
    photo_shape: tuple[int, int]  # (H, W)
    kind: str = "crop"            # 'crop' | 'face'
    box: CropBox | None = None    # the crop (kind 'crop')

    @property
    def scale(self) -> float:
        """Frame pixels per photo pixel."""
        return math.sqrt(abs(np.linalg.det(self.matrix[:, :2])))

    @property
    def side_in_photo(self) -> float:
        """The frame's side measured in photo pixels."""
        return self.size / self.scale

    def inverse(self) -> np.ndarray:
        """2x3 frame pixel -> photo pixel."""
        return cv2.invertAffineTransform(self.matrix)

    def resized(self, size: int) -> "Placement":
        """The same region of the photo framed at another side length."""
        s = size / self.size
        # u' = (u + 0.5) * s - 0.5 for frame pixel centres
        pre = np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]])
        m = pre @ np.vstack([self.matrix, [0, 0, 1]])
        return Placement(m, size, self.photo_shape, self.kind, self.box)


def default_crop(photo_shape: tuple[int, int]) -> CropBox:
    """The centred largest square (what `imageio.fit_square` uses)."""
    h, w = photo_shape[:2]
    s = min(h, w)
    return CropBox((w - s) // 2, (h - s) // 2, s)


def clamp_crop(box: CropBox, photo_shape: tuple[int, int]) -> CropBox:
    """The box moved/shrunk to lie inside the photo (side at least 1 px)."""
    h, w = photo_shape[:2]
    side = int(min(max(1, round(box.side)), h, w))
    x = int(min(max(0, round(box.x)), w - side))
    y = int(min(max(0, round(box.y)), h - side))
    return CropBox(x, y, side)


def crop_from_fractions(photo_shape: tuple[int, int], *, cx: float, cy: float, side: float) -> CropBox:
    """A crop from UI-style numbers: centre (cx, cy) as shares of width/height, side as a share of the short side."""
    h, w = photo_shape[:2]
    s = max(1, round(min(max(side, 0.05), 1.0) * min(h, w)))
    return clamp_crop(CropBox(round(cx * w - s / 2), round(cy * h - s / 2), s), photo_shape)


def crop_placement(photo_shape: tuple[int, int], size: int, box: CropBox | None = None) -> Placement:
    """The frame of `size` px showing square `box` (default: the centred square) of the photo."""
    box = clamp_crop(box or default_crop(photo_shape), photo_shape)
    s = size / box.side
    m = np.array([[s, 0, (0.5 - box.x) * s - 0.5], [0, s, (0.5 - box.y) * s - 0.5]], np.float64)
    return Placement(m, size, tuple(photo_shape[:2]), "crop", box)


def face_placement(landmarks: np.ndarray, template: np.ndarray, photo_shape: tuple[int, int],
                   size: int) -> Placement | None:
    """Similarity transform taking 68 landmarks (photo pixels) onto `template` ([0, 1], `(x + 0.5) / side`)
    scaled to `size`; None when the fit is degenerate."""
    dst = (np.asarray(template, np.float64) * size - 0.5).astype(np.float32)
    src = np.asarray(landmarks, np.float32)
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None or not np.isfinite(m).all() or abs(np.linalg.det(m[:, :2])) < 1e-12:
        return None
    return Placement(m.astype(np.float64), size, tuple(photo_shape[:2]), "face")


# ------------------------------------------------------------------------------------------- warping

def _is_crop(p: Placement) -> bool:
    return p.kind == "crop" and p.box is not None


def warp(img: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp `img` ([H, W] or [H, W, C], uint8 or float32) with 2x3 `matrix` into `size` x `size`, anti-aliased
    when shrinking (warpAffine has no area filter: shrink with INTER_AREA first, then warp at ~1:1)."""
    m = np.asarray(matrix, np.float64)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))
    src = img
    if scale < 0.8:
        h, w = img.shape[:2]
        nw, nh = max(1, round(w * scale * 1.1)), max(1, round(h * scale * 1.1))
        src = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA)
        fx, fy = nw / w, nh / h
        # new pixel centre u' = (u + 0.5) * fx - 0.5  =>  u = (u' + 0.5) / fx - 0.5
        pre = np.array([[1 / fx, 0, 0.5 / fx - 0.5], [0, 1 / fy, 0.5 / fy - 0.5], [0, 0, 1]])
        m = m @ pre
    flags = cv2.INTER_CUBIC if scale > 1.25 else cv2.INTER_LINEAR
    out = cv2.warpAffine(src, m, (size, size), flags=flags, borderMode=cv2.BORDER_REFLECT)
    return np.ascontiguousarray(out)


def to_frame(photo: np.ndarray, placement: Placement) -> np.ndarray:
    """The photo as the model sees it: uint8 RGB `[size, size, 3]`."""
    _check_photo(photo, placement)
    if _is_crop(placement):
        b, r = placement.box, placement.size
        sq = photo[b.y:b.y + b.side, b.x:b.x + b.side]
        if b.side != r:
            sq = cv2.resize(sq, (r, r), interpolation=cv2.INTER_AREA if b.side > r else cv2.INTER_CUBIC)
        return np.ascontiguousarray(sq, dtype=np.uint8)
    return warp(photo, placement.matrix, placement.size).astype(np.uint8)


def mask_to_frame(painted: np.ndarray, placement: Placement) -> np.ndarray:
    """A painted mask (photo pixels) in the frame: a frame pixel is painted when any part of it was."""
    painted = np.asarray(painted, bool)
    if painted.shape != tuple(placement.photo_shape):
        raise EngineError(f"mask size {painted.shape[1]}x{painted.shape[0]} does not match the photo's "
                          f"{placement.photo_shape[1]}x{placement.photo_shape[0]}")
    if _is_crop(placement):
        b = placement.box
        return coverage(painted[b.y:b.y + b.side, b.x:b.x + b.side], placement.size) > PAINTED_SHARE
    share = warp(painted.astype(np.float32), placement.matrix, placement.size)
    return share > PAINTED_SHARE


def strokes_to_frame(colours: np.ndarray, strokes: np.ndarray,
                     placement: Placement) -> tuple[np.ndarray, np.ndarray]:
    """A scribble (uint8 RGB + bool stroke mask, photo pixels) in the frame -> (uint8 RGB, bool mask). A frame
    pixel is a stroke when any part of it was stroked, and its colour is the mean colour of that stroked part
    only: shrinking the picture itself would give every frame pixel on a stroke's edge a blend of the stroke's
    colour and the canvas white, which the loss then asks G to draw. Pixels without strokes are white."""
    _check_photo(colours, placement)
    m = np.asarray(strokes, bool)
    if m.shape != tuple(placement.photo_shape):
        raise EngineError(f"stroke mask size {m.shape[1]}x{m.shape[0]} does not match the picture's "
                          f"{placement.photo_shape[1]}x{placement.photo_shape[0]}")
    weighted = colours.astype(np.float32) * m[..., None]
    if _is_crop(placement):
        b, r = placement.box, placement.size
        cut = (slice(b.y, b.y + b.side), slice(b.x, b.x + b.side))
        summed = cv2.resize(weighted[cut], (r, r), interpolation=cv2.INTER_AREA)
        share = coverage(m[cut], r)
    else:
        summed = warp(weighted, placement.matrix, placement.size)
        share = warp(m.astype(np.float32), placement.matrix, placement.size)
    painted = share > PAINTED_SHARE
    out = np.full((placement.size, placement.size, 3), 255.0, np.float32)
    out[painted] = summed[painted] / share[painted][:, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), painted


def from_frame(img: np.ndarray, placement: Placement) -> np.ndarray:
    """A frame-sized image (uint8 or float32, `[R, R]` or `[R, R, C]`) warped back onto the photo's pixel grid
    (float32; pixels outside the frame repeat its border: weigh them with `footprint`)."""
    if img.shape[0] != placement.size:
        placement = placement.resized(img.shape[0])
    h, w = placement.photo_shape
    inv = placement.inverse()
    flags = cv2.INTER_CUBIC if placement.scale < 0.8 else cv2.INTER_LINEAR  # enlarging back: cubic
    out = cv2.warpAffine(np.asarray(img, np.float32), inv, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    return out


def footprint(placement: Placement, *, feather: float | None = None) -> np.ndarray:
    """Float `[H, W]` weight of the frame in the photo: 1 well inside, ramping to exactly 0 at its edge over
    `feather` photo pixels (default `FEATHER_SHARE` of the frame's side)."""
    h, w = placement.photo_shape
    f = feather_px(placement) if feather is None else feather
    inside = cv2.warpAffine(np.ones((placement.size, placement.size), np.float32), placement.inverse(), (w, h),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    full = (inside > 0.999).astype(np.uint8)
    if f <= 0:
        return full.astype(np.float32)
    d = cv2.distanceTransform(full, cv2.DIST_L2, 5)  # distance to the nearest pixel outside the frame
    if full.all():  # the frame covers the whole photo: no seam to hide
        return np.ones((h, w), np.float32)
    return _smoothstep(d / f)


def feather_px(placement: Placement) -> float:
    return max(1.0, FEATHER_SHARE * placement.side_in_photo)


def region_weight(painted: np.ndarray, *, feather: float) -> np.ndarray:
    """1 on the painted region, ramping to exactly 0 at `feather` px outside it."""
    painted = np.asarray(painted, bool)
    if not painted.any():
        return np.zeros(painted.shape, np.float32)
    d = cv2.distanceTransform((~painted).astype(np.uint8), cv2.DIST_L2, 5)  # distance to the painted region
    return 1.0 - _smoothstep(d / max(feather, 1e-6))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0).astype(np.float32)
    return t * t * (3 - 2 * t)


def _check_photo(photo: np.ndarray, placement: Placement) -> None:
    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise EngineError(f"expected a uint8 RGB photo [H, W, 3], got {getattr(photo, 'dtype', type(photo))} "
                          f"{getattr(photo, 'shape', '')}")
    if photo.shape[:2] != tuple(placement.photo_shape):
        raise EngineError(f"photo is {photo.shape[1]}x{photo.shape[0]}, the placement was made for "
                          f"{placement.photo_shape[1]}x{placement.photo_shape[0]}")


# ---------------------------------------------------------------------------------------- compositing

def composite(photo: np.ndarray, result: np.ndarray, placement: Placement, *, painted: np.ndarray | None = None,
              feather: float | None = None) -> np.ndarray:
    """`result` (the model's frame) pasted into `photo` at the photo's resolution, uint8 RGB `[H, W, 3]`.

    painted: the user's inpaint region in photo pixels; only it (plus a feathered seam outside it) is replaced.
    Without it the whole frame is pasted, feathered inwards from the frame's edge. Pixels the weight leaves at 0
    are the photo's own, bit for bit.
    """
    _check_photo(photo, placement)
    f = feather_px(placement) if feather is None else feather
    weight = footprint(placement, feather=f)
    if painted is not None:
        painted = np.asarray(painted, bool)
        if painted.shape != photo.shape[:2]:
            raise EngineError("the painted mask must have the photo's size")
        weight = weight * region_weight(painted, feather=f) if painted.any() else np.zeros_like(weight)
    return _blend(photo, from_frame(result, placement), weight)


def _blend(photo: np.ndarray, pasted: np.ndarray, weight: np.ndarray) -> np.ndarray:
    a = weight[..., None]
    out = photo.astype(np.float32) * (1 - a) + pasted * a
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    keep = weight <= 0
    out[keep] = photo[keep]  # exactly the photo's own pixels where nothing is pasted
    return out


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luminance (the grayscale operator's weights), float32 `[H, W]` in 0..255."""
    return np.asarray(rgb, np.float32) @ Y_WEIGHTS


def chroma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 colour differences (Cb, Cr) around 0, float32 `[H, W, 2]` (JPEG YCbCr scaling)."""
    x = np.asarray(rgb, np.float32)
    y = x @ Y_WEIGHTS
    return np.stack([(x[..., 2] - y) * 0.564, (x[..., 0] - y) * 0.713], axis=-1)


def from_luma_chroma(y: np.ndarray, cbcr: np.ndarray) -> np.ndarray:
    """(Y, Cb, Cr) -> uint8 RGB that keeps Y: where the colour leaves the RGB cube, the chroma is scaled down
    (not the channels clipped), so the luminance stays the photo's own."""
    y = np.asarray(y, np.float32)
    cb, cr = cbcr[..., 0], cbcr[..., 1]
    delta = np.stack([cr / 0.713, -(0.299 / 0.587) * cr / 0.713 - (0.114 / 0.587) * cb / 0.564, cb / 0.564],
                     axis=-1)  # RGB - Y for this chroma
    with np.errstate(divide="ignore", invalid="ignore"):
        up = np.where(delta > 1e-6, (255.0 - y[..., None]) / delta, np.inf)
        down = np.where(delta < -1e-6, -y[..., None] / delta, np.inf)
    t = np.clip(np.minimum(up, down).min(axis=-1), 0.0, 1.0)
    rgb = y[..., None] + delta * t[..., None]
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def colorize_composite(photo: np.ndarray, result: np.ndarray, placement: Placement, *,
                       feather: float | None = None) -> np.ndarray:
    """The photo's own luminance at full resolution, coloured with the result's chroma (smoothly enlarged);
    outside the frame the photo's own chroma, blended over a feathered seam."""
    _check_photo(photo, placement)
    weight = footprint(placement, feather=feather)[..., None]
    sigma = result.shape[0] * CHROMA_SMOOTH
    result_chroma = from_frame(cv2.GaussianBlur(chroma(result), (0, 0), sigma) if sigma >= 0.5 else chroma(result),
                               placement)
    if placement.scale < 1:  # enlarged chroma: soften it, so no model-pixel blocks or cubic ringing show
        k = max(3, int(round(1 / placement.scale)) | 1)
        result_chroma = cv2.GaussianBlur(result_chroma, (k, k), 0)
    cbcr = chroma(photo) * (1 - weight) + result_chroma * weight
    return from_luma_chroma(luma(photo), cbcr)


def enlarged(photo: np.ndarray, placement: Placement, factor: int) -> tuple[np.ndarray, Placement]:
    """The photo enlarged `factor` times (cubic) and the same placement on the enlarged pixel grid."""
    if factor <= 1:
        return photo, placement
    h, w = photo.shape[:2]
    big = cv2.resize(photo, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC)
    k = float(factor)
    pre = np.array([[1 / k, 0, 0.5 / k - 0.5], [0, 1 / k, 0.5 / k - 0.5], [0, 0, 1]])  # big pixel -> photo pixel
    box = None if placement.box is None else CropBox(placement.box.x * factor, placement.box.y * factor,
                                                     placement.box.side * factor)
    return big, Placement(placement.matrix @ pre, placement.size, (h * factor, w * factor), placement.kind, box)


def photo_composite(task: str, photo: np.ndarray, result: np.ndarray, placement: Placement, *,
                    painted: np.ndarray | None = None) -> np.ndarray:
    """The composite a task returns, at the photo's own size: inpaint pastes the painted region, colorize
    transfers chroma, scribble has no photo (the result itself), the rest paste the whole frame back. Super-
    resolution enlarges the photo first when the frame has more pixels than the region it covers (so the
    result keeps its resolution)."""
    if task == "inpaint":
        return composite(photo, result, placement, painted=painted)
    if task == "colorize":
        return colorize_composite(photo, result, placement)
    if task == "scribble":
        return np.ascontiguousarray(result)
    if task == "superres":
        photo, placement = enlarged(photo, placement, math.ceil(placement.scale * result.shape[0] / placement.size
                                                                - 1e-6))
    return composite(photo, result, placement)


__all__ = ["CropBox", "Placement", "chroma", "clamp_crop", "colorize_composite", "composite", "crop_from_fractions",
           "crop_placement", "default_crop", "enlarged", "face_placement", "feather_px", "footprint", "from_frame",
           "from_luma_chroma", "luma", "mask_to_frame", "photo_composite", "region_weight", "strokes_to_frame",
           "to_frame", "warp"]
