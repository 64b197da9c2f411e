"""Held-out quality report: reconstruct images through the engine (w+, fixed steps), print mean PSNR/SSIM,
write an 8x8 sample grid and a (target | result) reconstruction grid.

CLI: `python -m engine.evaluate MODEL --images DIR [--names LIST.txt] [--n 32] [--steps 300] --out DIR`.
(It lives in `engine` because it runs the engine; `models` must not import `engine`.)
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

from models import load_model

from .export import write_png
from .imageio import fit_square, read_rgb
from .inversion import run, to_uint8
from .metrics import psnr, ssim
from .model import EngineModel, prepare
from .types import InversionConfig, InversionRequest, LossWeights

log = logging.getLogger("engine.evaluate")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@torch.inference_mode()
def sample_grid(model: EngineModel, *, n: int = 8, seed: int = 0, psi: float = 1.0) -> np.ndarray:
    """n x n uint8 RGB grid of G(z) for fixed seeds."""
    G = model.G
    z = torch.randn(n * n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(model.device)
    imgs = [to_uint8(G(z[i:i + 1], truncation_psi=psi, noise_mode="const")) for i in range(n * n)]
    rows = [np.concatenate(imgs[r * n:(r + 1) * n], axis=1) for r in range(n)]
    return np.concatenate(rows, axis=0)


def evaluate(model: EngineModel, files: list[Path], *, steps: int = 300,
             config: InversionConfig | None = None) -> tuple[dict, list[tuple[np.ndarray, np.ndarray]]]:
    """Mean/median PSNR and SSIM of w+ reconstructions -> (figures, [(target, result), ...])."""
    cfg = config or InversionConfig(latent_space="w+", steps=steps, preview_every=steps,
                                    weights=LossWeights(l2=1.0, perceptual=0.3))
    pairs, ps, ss = [], [], []
    for f in files:
        target, _ = fit_square(read_rgb(f), model.resolution)
        result = list(run(model, InversionRequest(target=target, config=cfg)))[-1].image
        pairs.append((target, result))
        ps.append(psnr(target, result))
        ss.append(ssim(target, result))
        log.info("%s: PSNR %.2f dB  SSIM %.3f", f.name, ps[-1], ss[-1])
    figures = {"images": len(files), "steps": cfg.steps, "latent_space": cfg.latent_space,
               "psnr_mean": statistics.fmean(ps), "psnr_median": statistics.median(ps),
               "ssim_mean": statistics.fmean(ss), "ssim_median": statistics.median(ss)}
    return figures, pairs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--images", required=True, help="folder of held-out images")
    p.add_argument("--names", help="text file listing which files of --images to use (e.g. a heldout.txt)")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    folder = Path(a.images)
    if a.names:
        names = [ln.strip() for ln in Path(a.names).read_text().splitlines() if ln.strip()]
        files = [folder / n for n in names if (folder / n).is_file()]
    else:
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    files = files[: a.n]
    if not files:
        print("error: no images to evaluate", file=sys.stderr)
        return 2
    model = prepare(load_model(a.model, device=a.device), device=a.device)
    figures, pairs = evaluate(model, files, steps=a.steps)
    out = Path(a.out)
    write_png(out / "samples.png", sample_grid(model))
    rows = [np.concatenate([t, r], axis=1) for t, r in pairs[:16]]
    write_png(out / "reconstructions.png", np.concatenate(rows, axis=0))
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(f"{model.config.name}: {figures['images']} held-out images, w+ {figures['steps']} steps: "
          f"PSNR {figures['psnr_mean']:.2f} dB (median {figures['psnr_median']:.2f}), "
          f"SSIM {figures['ssim_mean']:.3f} (median {figures['ssim_median']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
