"""Benchmark: optimisation steps/s of w+ inversion (pixel + perceptual loss) per resolution and precision.

`python -m engine.bench [--res 64 128 256] [--steps 30] [--model FILE_OR_NAME] [--perceptual discriminator|
vgg16-random|none] [--size bundled|official] [--device cpu|cuda] [--threads N]` prints one line per setting
with the median of `--repeats` runs. Random-weight networks are built in code unless `--model` is given.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch

import models
from engine.inversion import run
from engine.model import prepare
from engine.types import InversionConfig, InversionRequest, LossWeights, OperatorSpec


def random_model(resolution: int, *, size: str, device: str) -> models.LoadedModel:
    """Random-weight StyleGAN2 G/D: 'bundled' = our CPU family (32 ch at 64 px), 'official' = config-f."""
    if size == "official":
        cfg = models.small_stylegan2_config(resolution=resolution, channel_base=32768, channel_max=512,
                                            z_dim=512, w_dim=512, mapping_layers=8, name=f"configf{resolution}")
    else:
        cfg = models.small_stylegan2_config(resolution=resolution, channel_base=2048 * resolution // 64,
                                            channel_max=256, z_dim=256, w_dim=256, name=f"bundled{resolution}")
    torch.manual_seed(0)
    G = models.build_generator(cfg).eval().requires_grad_(False)
    D = models.build_discriminator(cfg).eval().requires_grad_(False)
    return models.LoadedModel(cfg, G.to(device), D.to(device))


def time_run(model, *, steps: int, bf16: bool, perceptual: str, task_mask: bool) -> float:
    """Seconds per step of one run (frames only at the end)."""
    r = model.resolution
    target = np.random.default_rng(0).integers(0, 255, (r, r, 3), dtype=np.uint8)
    known = None
    ops = (OperatorSpec("identity"),)
    if task_mask:
        known = np.ones((r, r), bool)
        known[r // 4: 3 * r // 4, r // 4: 3 * r // 4] = False
        ops = (OperatorSpec("mask"),)
    cfg = InversionConfig(latent_space="w+", steps=steps, preview_every=steps, bf16=bf16, perceptual=perceptual,
                          weights=LossWeights(l2=1.0, perceptual=0.0 if perceptual == "none" else 0.3))
    t0 = time.perf_counter()
    frames = list(run(model, InversionRequest(target=target, operators=ops, known=known, config=cfg)))
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / frames[-1].step


def time_concurrent(model, n: int, *, steps: int, bf16: bool, perceptual: str, task_mask: bool) -> float:
    """Total optimisation steps/s of `n` simultaneous runs through the batched multi-run engine."""
    import threading

    from engine.batched import BatchedEngine
    r = model.resolution
    rng = np.random.default_rng(1)
    reqs = []
    for i in range(n):
        target = rng.integers(0, 255, (r, r, 3), dtype=np.uint8)
        known, ops = None, (OperatorSpec("identity"),)
        if task_mask:
            known = np.ones((r, r), bool)
            known[r // 4: 3 * r // 4, r // 4: 3 * r // 4] = False
            ops = (OperatorSpec("mask"),)
        cfg = InversionConfig(latent_space="w+", steps=steps, preview_every=steps, bf16=bf16, perceptual=perceptual,
                              seed=i, weights=LossWeights(l2=1.0, perceptual=0.0 if perceptual == "none" else 0.3))
        reqs.append(InversionRequest(target=target, operators=ops, known=known, config=cfg))
    eng = BatchedEngine(model, max_batch=max(8, n))
    try:
        t0 = time.perf_counter()
        iters = [eng.submit(q) for q in reqs]
        threads = [threading.Thread(target=lambda it=it: list(it)) for it in iters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return n * steps / (time.perf_counter() - t0)
    finally:
        eng.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="checkpoint (any supported format) or bundled name instead of random nets")
    p.add_argument("--perceptual", default="discriminator", choices=("discriminator", "vgg16-random", "vgg16",
                                                                      "none"))
    p.add_argument("--size", default="bundled", choices=("bundled", "official"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=("fp32", "bf16"))
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--inpaint", action="store_true", help="use the mask operator (inpainting) instead of identity")
    p.add_argument("--concurrent", type=int, nargs="*", default=[],
                   help="also measure total steps/s of N simultaneous runs (batched engine), e.g. 1 2 4 8")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = a.device
    print(f"# device={dev} torch={torch.__version__} threads={torch.get_num_threads()} perceptual={a.perceptual} "
          f"task={'inpaint' if a.inpaint else 'reconstruct'} steps={a.steps} repeats={a.repeats}")
    loaded = [models.load_model(a.model, device=dev)] if a.model else [random_model(r, size=a.size, device=dev)
                                                                         for r in a.res]
    for lm in loaded:
        model = prepare(lm, device=dev)
        for prec in a.precision:
            bf16 = prec == "bf16"
            time_run(model, steps=3, bf16=bf16, perceptual=a.perceptual, task_mask=a.inpaint)  # warm-up
            times = [time_run(model, steps=a.steps, bf16=bf16, perceptual=a.perceptual, task_mask=a.inpaint)
                     for _ in range(a.repeats)]
            med = statistics.median(times)
            print(f"{lm.config.name:>14} {model.resolution:>4}px {prec:>5}: {1 / med:7.1f} steps/s "
                  f"({med * 1000:.1f} ms/step, median of {a.repeats})", flush=True)
            base = None
            for n in a.concurrent:
                rates = [time_concurrent(model, n, steps=a.steps, bf16=bf16, perceptual=a.perceptual,
                                         task_mask=a.inpaint) for _ in range(a.repeats)]
                rate = statistics.median(rates)
                base = base or (rate if n == 1 else None)
                ratio = f" ({rate / base:.2f}x the 1-run total)" if base else ""
                print(f"{'':>14} {model.resolution:>4}px {prec:>5}: {n} concurrent runs: {rate:7.1f} steps/s total"
                      f"{ratio}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
