"""engine.photo: photo <-> model frame round trips, feathered composites that leave the rest of the photo alone,
and colorize composites that keep the photo's own luminance at full resolution."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from engine import photo
from engine.imageio import fit_mask, fit_square
from engine.metrics import psnr


def smooth_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth colour picture (low-frequency noise), so that resampling errors stay small."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def rotated_placement(shape, size, *, angle=17.0, scale=0.35, centre=None) -> photo.Placement:
    h, w = shape
    cx, cy = centre or (w / 2, h / 2)
    m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
    m[:, 2] += np.array([size / 2 - cx, size / 2 - cy])  # the chosen centre lands in the frame's middle
    return photo.Placement(m, size, (h, w), "face")


def test_default_crop_is_fit_square():
    img = smooth_photo(300, 220)
    p = photo.crop_placement(img.shape[:2], 64)
    assert p.box.side == 220
    np.testing.assert_array_equal(photo.to_frame(img, p), fit_square(img, 64)[0])
    mask = np.zeros(img.shape[:2], bool)
    mask[100:140, 50:53] = True
    np.testing.assert_array_equal(photo.mask_to_frame(mask, p), fit_mask(mask, 64))


def test_crop_box_is_clamped_inside_the_photo():
    b = photo.clamp_crop(photo.CropBox(-20, 500, 900), (300, 200))
    assert (b.x, b.y, b.side) == (0, 100, 200)
    b = photo.crop_from_fractions((300, 200), cx=1.0, cy=0.0, side=0.5)
    assert b.side == 100 and b.x == 100 and b.y == 0


@pytest.mark.parametrize("kind", ["crop", "face"])
def test_warp_then_inverse_returns_the_photo(kind):
    img = smooth_photo(240, 320, seed=1)
    if kind == "crop":
        p = photo.crop_placement(img.shape[:2], 200, photo.CropBox(60, 20, 200))
    else:
        p = rotated_placement(img.shape[:2], 200, scale=1.0)
    frame = photo.to_frame(img, p)
    back = photo.from_frame(frame, p)
    inside = photo.footprint(p, feather=3) >= 1
    assert inside.sum() > 0.3 * (200 * 200)
    err = np.abs(back[inside] - img[inside].astype(np.float32))
    assert err.mean() < 1.5 and err.max() < 12, (err.mean(), err.max())
    # and the inverse matrix really inverts: frame corners -> photo -> frame
    pts = np.array([[0, 0], [199, 0], [0, 199], [123.5, 45.25]], np.float64)
    inv = p.inverse()
    there = pts @ inv[:, :2].T + inv[:, 2]
    again = there @ p.matrix[:, :2].T + p.matrix[:, 2]
    np.testing.assert_allclose(again, pts, atol=1e-9)


def test_resized_placement_frames_the_same_region():
    img = smooth_photo(400, 400, seed=2)
    p = rotated_placement(img.shape[:2], 256, scale=0.8)
    a = photo.to_frame(img, p.resized(64))
    b = cv2.resize(photo.to_frame(img, p), (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 2.0


def test_mask_warps_like_the_photo():
    img = np.zeros((300, 300, 3), np.uint8)
    mask = np.zeros((300, 300), bool)
    mask[120:160, 100:200] = True
    img[mask] = 255
    p = rotated_placement(img.shape[:2], 64, angle=30, scale=0.3)
    m = photo.mask_to_frame(mask, p)
    bright = photo.to_frame(img, p)[..., 0] > 127
    assert bright.sum() > 20
    assert m[bright].all()                       # every frame pixel showing the region is painted
    assert m.sum() <= bright.sum() * 1.8 + 40    # and the mask is not much larger than it


def test_inpaint_composite_keeps_the_photo_outside_the_painted_region():
    img = smooth_photo(1000, 800, seed=3)
    p = rotated_placement(img.shape[:2], 64, angle=-10, scale=64 / 600, centre=(400, 480))
    painted = np.zeros(img.shape[:2], bool)
    painted[400:480, 300:520] = True
    result = np.full((64, 64, 3), (20, 200, 40), np.uint8)
    out = photo.composite(img, result, p, painted=painted)
    assert out.shape == img.shape and out.dtype == np.uint8
    f = photo.feather_px(p)
    dist = cv2.distanceTransform((~painted).astype(np.uint8), cv2.DIST_L2, 5)
    far = dist >= f + 1
    np.testing.assert_array_equal(out[far], img[far])        # beyond the feather: the photo's own pixels
    core = cv2.erode(painted.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert np.abs(out[core].astype(int) - (20, 200, 40)).max() <= 3  # the painted region is the result
    # the seam is gradual: no jump larger than a fraction of the colour difference between neighbours
    row = out[440, 520:520 + int(f) + 2].astype(int)
    assert np.abs(np.diff(row, axis=0)).max() < 0.5 * np.abs(row[0] - row[-1]).max() + 2


def test_full_frame_composite_leaves_outside_alone_and_pastes_inside():
    img = smooth_photo(500, 700, seed=4)
    p = photo.crop_placement(img.shape[:2], 64, photo.CropBox(300, 100, 256))
    result = np.full((64, 64, 3), 128, np.uint8)
    out = photo.composite(img, result, p)
    outside = np.ones(img.shape[:2], bool)
    outside[100:356, 300:556] = False
    np.testing.assert_array_equal(out[outside], img[outside])
    assert np.abs(out[200:260, 400:460].astype(int) - 128).max() <= 1


def test_grey_photo_colorized_keeps_its_luminance_at_full_resolution():
    colour = smooth_photo(1000, 1000, seed=5)
    grey = np.repeat(np.rint(photo.luma(colour)).clip(0, 255).astype(np.uint8)[..., None], 3, axis=2)
    p = rotated_placement(grey.shape[:2], 64, angle=8, scale=64 / 700)
    result = photo.to_frame(colour, p)  # a "model" that knows the true colours, at 64 px
    out = photo.colorize_composite(grey, result, p)
    assert out.shape == (1000, 1000, 3)
    y_in, y_out = photo.luma(grey), photo.luma(out)
    assert 10 * math.log10(255 ** 2 / float(((y_in - y_out) ** 2).mean())) >= 40  # luminance kept
    inside = photo.footprint(p) >= 1
    c_out, c_true = photo.chroma(out)[inside], photo.chroma(colour)[inside]
    assert np.abs(c_out).mean() > 5                                   # it is in colour now
    assert np.sqrt(((c_out - c_true) ** 2).mean()) < 0.35 * np.sqrt((c_true ** 2).mean())
    # outside the frame the (grey) photo stays grey
    far = photo.footprint(p, feather=0) == 0
    assert np.abs(photo.chroma(out)[far]).max() < 1.0


def test_luminance_is_kept_when_the_colour_leaves_the_rgb_cube():
    y = np.array([[5.0, 250.0, 128.0]], np.float32)
    cbcr = np.array([[[60.0, 90.0], [-80.0, 70.0], [0.0, 0.0]]], np.float32)
    rgb = photo.from_luma_chroma(y, cbcr)
    assert np.abs(photo.luma(rgb) - y).max() < 1.0
    assert psnr(rgb[0, 2:3], np.full((1, 3), 128, np.uint8)) > 40


@pytest.mark.parametrize("name,domain,face", [
    ("face64", "faces-utk-128", True), ("ffhq", "human faces (FFHQ)", True), ("metfaces", "faces in art", True),
    ("afhqcat", "cat faces (AFHQ cat)", False), ("cat64", "cats-afhq-128", False), ("tiny32", "random", False)])
def test_face_models_are_recognised(name, domain, face):
    from engine.framing import is_face_model
    assert is_face_model(name, domain) is face


def test_frame_photo_falls_back_to_the_crop_without_a_face():
    from engine.framing import frame_photo
    img = smooth_photo(120, 200, seed=6)  # no face in it
    p, note = frame_photo(img, 64, align_face=True, crop=photo.CropBox(10, 5, 100))
    assert p.kind == "crop" and (p.box.x, p.box.y, p.box.side) == (10, 5, 100) and "no face" in note
