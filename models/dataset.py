"""Image-folder dataset for training: decoded once into a uint8 tensor `[N, 3, R, R]` (RGB), with a
deterministic hash-based hold-out split so evaluation images are never trained on."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
log = logging.getLogger(__name__)


def is_held_out(name: str, *, fraction: float) -> bool:
    """Stable split on the file name: the same files are held out on every machine and run."""
    h = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
    return h / 0xFFFFFFFF < fraction


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return files


def split_files(folder: str | Path, *, holdout_fraction: float) -> tuple[list[Path], list[Path]]:
    """(train, held_out) file lists."""
    files = list_images(folder)
    held = [p for p in files if is_held_out(p.name, fraction=holdout_fraction)]
    train = [p for p in files if not is_held_out(p.name, fraction=holdout_fraction)]
    return train, held


def load_square(path: str | Path, resolution: int) -> np.ndarray:
    """Centre-crop to square, resize with antialiasing -> `[R, R, 3]` uint8 RGB."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
        if s != resolution:
            im = im.resize((resolution, resolution), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8)


def image_sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of one image's grey level, uint8 `[R, R, 3]` RGB -> float; low = blurred (a flat
    image scores 0). Only comparable between images of one size."""
    import cv2  # only the blur filter and the gallery's figure need it

    grey = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def sharpness(images: torch.Tensor) -> np.ndarray:
    """`image_sharpness` of each image of a uint8 `[N, 3, R, R]` RGB batch -> float `[N]`."""
    return np.array([image_sharpness(img) for img in images.permute(0, 2, 3, 1).numpy()], dtype=np.float64)


def load_images(files: list[Path], resolution: int) -> torch.Tensor:
    """Decode files -> uint8 tensor `[N, 3, R, R]`."""
    arr = np.stack([load_square(p, resolution) for p in files])
    log.info("loaded %d images at %d px", len(files), resolution)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
