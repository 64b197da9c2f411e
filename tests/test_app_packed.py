"""Frames kept for rewinding hold their images PNG-encoded (app/packed.py): lossless, smaller, same API."""
from __future__ import annotations

import numpy as np
import torch

from app.handlers import SavedFrame
from app.packed import PackedImage, decode_png


def _smooth(size: int = 256) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size]
    return np.stack([x, y, (x + y) // 2], axis=-1).astype(np.uint8)


def test_saved_frame_keeps_png_bytes_and_gives_back_the_same_pixels():
    image, degraded = _smooth(), np.full((256, 256, 3), 200, np.uint8)
    f = SavedFrame(step=3, latent=torch.zeros(4), space="w", noises=None, image=image, degraded=degraded,
                   losses={"total": 1.0})
    held = vars(f)
    assert "image" not in held and "degraded" not in held  # no raw arrays in the session
    assert isinstance(held["_image_png"], bytes) and isinstance(held["_degraded_png"], bytes)
    assert np.array_equal(f.image, image) and np.array_equal(f.degraded, degraded)
    assert f.image is not f.image  # a fresh array per read: callers cannot change what is kept
    assert PackedImage.nbytes(f) < (image.nbytes + degraded.nbytes) / 4
    f.image = degraded  # re-assignment re-encodes
    assert np.array_equal(f.image, degraded)


def test_decode_keeps_channels():
    from app.render import encode_png
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 128
    assert np.array_equal(decode_png(encode_png(rgba)), rgba)
    rgb = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(encode_png(rgb)), rgb)
