"""Exports: progress strip and animation, interpolation GIF/MP4, loss-curve PNG (numpy + opencv + imageio).

Frames are uint8 RGB `[H, W, 3]`; functions write files and return their paths.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

TERM_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194)]


def strip(frames: Sequence[np.ndarray], *, max_frames: int = 10) -> np.ndarray:
    """Evenly chosen frames side by side -> `[H, k*W, 3]`."""
    if not frames:
        raise ValueError("no frames to put in a strip")
    idx = np.unique(np.linspace(0, len(frames) - 1, min(max_frames, len(frames))).round().astype(int))
    return np.concatenate([frames[i] for i in idx], axis=1)


def write_png(path: str | Path, rgb: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path


def upscale(rgb: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour enlarge so small model outputs are visible in animations."""
    if rgb.shape[0] >= size:
        return rgb
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)


def write_gif(path: str | Path, frames: Sequence[np.ndarray], *, fps: float = 10, size: int = 256) -> Path:
    import imageio.v3 as iio
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack([upscale(f, size) for f in frames]), extension=".gif", duration=1000 / fps, loop=0)
    return path


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], *, fps: float = 10, size: int = 256) -> Path:
    """H.264 MP4 through imageio-ffmpeg's bundled ffmpeg."""
    import imageio.v2 as iio2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with iio2.get_writer(path, fps=fps, codec="libx264", quality=8, macro_block_size=16) as w:
        for f in frames:
            w.append_data(upscale(f, size))
    return path


def loss_plot(history: Sequence[tuple[int, dict[str, float]]], *, width: int = 480, height: int = 240) -> np.ndarray:
    """Log-scale curves of each loss term over steps -> uint8 RGB `[height, width, 3]`."""
    img = np.full((height, width, 3), 255, np.uint8)
    if not history:
        return img
    names = sorted({k for _, d in history for k in d})
    steps = np.array([s for s, _ in history], dtype=float)
    pad = 30
    x0, x1, y0, y1 = pad, width - 10, 10, height - pad
    cv2.rectangle(img, (x0, y0), (x1, y1), (200, 200, 200), 1)
    all_vals = np.array([max(d.get(n, np.nan), 1e-12) for _, d in history for n in names], dtype=float)
    all_vals = all_vals[np.isfinite(all_vals)]
    lo, hi = (np.log10(all_vals.min()), np.log10(all_vals.max())) if all_vals.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1
    smin, smax = steps.min(), max(steps.max(), steps.min() + 1)
    for i, n in enumerate(names):
        vals = np.array([max(d.get(n, np.nan), 1e-12) for _, d in history], dtype=float)
        ok = np.isfinite(vals)
        if ok.sum() < 1:
            continue
        xs = x0 + (steps[ok] - smin) / (smax - smin) * (x1 - x0)
        ys = y1 - (np.log10(vals[ok]) - lo) / (hi - lo) * (y1 - y0)
        pts = np.stack([xs, ys], axis=1).round().astype(np.int32)
        colour = TERM_COLOURS[i % len(TERM_COLOURS)]
        cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, colour, 2, cv2.LINE_AA)
        label_x = x0 + 5 + sum(cv2.getTextSize(m, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)[0][0] + 12 for m in names[:i])
        cv2.putText(img, n, (label_x, height - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    cv2.putText(img, f"1e{hi:.1f}", (2, y0 + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1)
    cv2.putText(img, f"1e{lo:.1f}", (2, y1), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1)
    return img


def write_quality_csv(path: str | Path, rows: Sequence[tuple[int, float, float, float]]) -> Path:
    """Per-frame figures (step, total loss, PSNR dB, SSIM of what the loss compares) as CSV."""
    path = Path(path)
    lines = ["step,loss,psnr_db,ssim"] + [f"{s},{loss:.6g},{p:.3f},{q:.4f}" for s, loss, p, q in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
