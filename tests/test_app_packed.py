"""Frames kept for rewinding hold their images PNG-encoded (app/packed.py): lossless, smaller, same API."""
from __future__ import annotations

import numpy as np
import torch

from app.session import SavedFrame
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


def test_noise_maps_kept_within_a_budget_newest_first(monkeypatch):
    from pathlib import Path

    from app import session
    monkeypatch.setattr(session, "NOISE_BUDGET", 3 * 4096 * 4)  # room for 3 frames' maps
    record = session.RunRecord(run_id="r", task="inpaint", model_key="m", model_name="m", request=None,
                               input_view=np.zeros((4, 4, 3), np.uint8), folder=Path("."))
    for step in range(1, 11):
        noises = (torch.full((64, 64), float(step)),)  # 16 KiB per frame
        record.keep(SavedFrame(step=step, latent=torch.zeros(4), space="w", noises=noises, image=_smooth(8),
                               degraded=_smooth(8), losses={"total": 1.0}), limit=100)
    with_noise = [f.step for f in record.frames if f.noises is not None]
    assert with_noise == [8, 9, 10] and len(record.frames) == 10
    assert float(record.frames[-1].noises[0][0, 0]) == 10.0
    monkeypatch.setattr(session, "NOISE_BUDGET", 1)  # smaller than one frame: the latest still keeps its own
    record.keep(SavedFrame(step=11, latent=torch.zeros(4), space="w", noises=(torch.ones(64, 64),),
                           image=_smooth(8), degraded=_smooth(8), losses={}), limit=100)
    assert [f.step for f in record.frames if f.noises is not None] == [11]
