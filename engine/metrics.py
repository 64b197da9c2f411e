"""Image quality metrics on uint8 RGB `[H, W, 3]` arrays: PSNR (dB), SSIM (Gaussian 11x11, sigma 1.5) and chroma
RMS (BT.601 Cb/Cr, 0..255 scale), each optionally restricted to a bool mask `[H, W]` (True = counted; for SSIM,
windows centred on counted pixels); one image's sharpness (no reference); and how far apart several draws of one
input are (seed spread)."""
from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

# The trainer's blur measure (variance of the Laplacian of the grey level), one formula for the trainer's filter and
# the gallery's figure: low = soft or smeared, 0 = flat; only comparable between images of one size.
from models.dataset import image_sharpness as sharpness  # noqa: F401 - re-exported as engine.metrics.sharpness

from .photo import chroma


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    d2 = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        m = np.asarray(mask, bool)
        if not m.any():
            return float("nan")
        d2 = d2[m]
    mse = float(d2.mean())
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def chroma_rms(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """RMS of the (Cb, Cr) difference: how far apart two images' colours are, whatever their brightness."""
    d = chroma(a) - chroma(b)
    if mask is not None:
        d = d[np.asarray(mask, bool)]
    return float(np.sqrt((d ** 2).mean()))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over channels (Wang et al. 2004 constants, data range 255); NaN when the mask counts no window."""
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.shape[0] < 11 or m.shape[1] < 11:
            return float("nan")
        inner = m[5:-5, 5:-5]
        if not inner.any():
            return float("nan")
        return float(_ssim_map(a, b)[:, :, inner].mean())
    return float(_ssim_map(a, b).mean())


def _ssim_map(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """Per-channel SSIM map `[3, 1, H-10, W-10]` (valid windows only)."""
    x = torch.from_numpy(a.astype(np.float64)).permute(2, 0, 1)[:, None]
    y = torch.from_numpy(b.astype(np.float64)).permute(2, 0, 1)[:, None]
    r = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(r ** 2) / (2 * 1.5 ** 2))
    g = g / g.sum()
    win = torch.outer(g, g)[None, None]
    mu_x, mu_y = F.conv2d(x, win), F.conv2d(y, win)
    sxx = F.conv2d(x * x, win) - mu_x ** 2
    syy = F.conv2d(y * y, win) - mu_y ** 2
    sxy = F.conv2d(x * y, win) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))


def seed_spread(images: Sequence[np.ndarray]) -> float:
    """Mean pairwise RMS difference (0..255) between draws of one input with different seeds, NaN for fewer than
    two. A search that lands on the same picture from every start scores low (two later face64 snapshots drew one
    woman for the brunette scribble at all 18 seeds: 9.2 and 11.7, the shipped model 24.9). It counts pixels, not
    identity: grumpycat64's draws of one cat in varied light score 27.8."""
    if len(images) < 2:
        return float("nan")
    if len({im.shape for im in images}) != 1:
        raise ValueError(f"seed_spread needs images of one shape, got {sorted({im.shape for im in images})}")
    flat = [im.astype(np.float64) for im in images]
    return float(np.mean([np.sqrt(((a - b) ** 2).mean()) for a, b in itertools.combinations(flat, 2)]))
