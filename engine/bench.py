"""Benchmark: optimisation steps/s of w+ inversion (pixel + perceptual loss) per resolution and precision.

`python -m engine.bench [--res 64 128 256] [--steps 30] [--model FILE_OR_NAME] [--perceptual discriminator|
mobilenet|vgg16-random|none] [--size bundled|official] [--device cpu|cuda] [--precision fp32 tf32 bf16] [--threads N]
[--concurrent 1 2 4 8] [--peak-tflops X]` prints one line per setting with the median of `--repeats` runs,
the FLOPs of one optimisation step (forward + backward, counted by torch's FlopCounterMode) and the achieved
FLOP rate (as a share of `--peak-tflops` when given). Random-weight networks are built in code unless
`--model` is given (any supported checkpoint format, or a bundled / catalogue name).
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import numpy as np
import torch

import models
from engine.inversion import run
from engine.model import EngineModel, prepare
from engine.perceptual import build_extractor, requested_kind
from engine.runstate import adam_step, new_run
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


def bench_request(resolution: int, *, steps: int, bf16: bool, perceptual: str, task_mask: bool,
                  seed: int = 0) -> InversionRequest:
    """A w+ inversion of a random picture: reconstruction, or inpainting of the central square."""
    r = resolution
    target = np.random.default_rng(seed).integers(0, 255, (r, r, 3), dtype=np.uint8)
    known = None
    ops = (OperatorSpec("identity"),)
    if task_mask:
        known = np.ones((r, r), bool)
        known[r // 4: 3 * r // 4, r // 4: 3 * r // 4] = False
        ops = (OperatorSpec("mask"),)
    cfg = InversionConfig(latent_space="w+", steps=steps, preview_every=steps, bf16=bf16, perceptual=perceptual,
                          seed=seed, weights=LossWeights(l2=1.0, perceptual=0.0 if perceptual == "none" else 0.3))
    return InversionRequest(target=target, operators=ops, known=known, config=cfg)


def time_run(model, *, steps: int, bf16: bool, perceptual: str, task_mask: bool) -> float:
    """Seconds per step of one run (frames only at the end)."""
    req = bench_request(model.resolution, steps=steps, bf16=bf16, perceptual=perceptual, task_mask=task_mask)
    t0 = time.perf_counter()
    frames = list(run(model, req))
    if model.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / frames[-1].step


def step_flops(model: EngineModel, *, batch: int, bf16: bool, perceptual: str, task_mask: bool) -> int:
    """FLOPs of one optimisation step of `batch` stacked runs: generator, operator, perceptual network and
    losses, forward and backward (matmuls and convolutions, as torch.utils.flop_counter counts them)."""
    from torch.utils.flop_counter import FlopCounterMode
    reqs = [bench_request(model.resolution, steps=10, bf16=bf16, perceptual=perceptual, task_mask=task_mask,
                          seed=i) for i in range(batch)]
    extractor, kind, messages = build_extractor(requested_kind(reqs[0].config), D=model.D, device=model.device)
    runs = [new_run(model, r, extractor, messages, kind) for r in reqs]
    counter = FlopCounterMode(display=False)
    with counter:
        adam_step(model, runs, extractor)
    return int(counter.get_total_flops())


def set_fp32_matmul(precision: str) -> None:
    """'tf32' lets CUDA matmuls/convolutions use TF32 tensor cores; 'fp32' (and 'bf16') keeps IEEE fp32."""
    mode = "tf32" if precision == "tf32" else "ieee"
    with contextlib.suppress(AttributeError, RuntimeError):
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode


def time_concurrent(model, n: int, *, steps: int, bf16: bool, perceptual: str, task_mask: bool,
                    workers: int = 1) -> float:
    """Total optimisation steps/s of `n` simultaneous runs through the batched multi-run engine."""
    import threading

    from engine.batched import BatchedEngine
    reqs = [bench_request(model.resolution, steps=steps, bf16=bf16, perceptual=perceptual, task_mask=task_mask,
                          seed=i + 1) for i in range(n)]
    eng = BatchedEngine(model, max_batch=max(8, n), workers=workers)
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


def _rate(flops_per_s: float, peak_tflops: float) -> str:
    text = f"{flops_per_s / 1e12:.3f} TFLOP/s"
    return text + (f" = {flops_per_s / 1e12 / peak_tflops * 100:.1f}% of {peak_tflops:g}" if peak_tflops else "")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.bench", description=__doc__.splitlines()[0])
    p.add_argument("--res", type=int, nargs="+", default=[64, 128, 256])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--model", help="checkpoint (any supported format) or bundled name instead of random nets")
    p.add_argument("--perceptual", default="discriminator", choices=("discriminator", "mobilenet", "vgg16-random",
                                                                      "vgg16", "none"))
    p.add_argument("--size", default="bundled", choices=("bundled", "official"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"], choices=("fp32", "tf32", "bf16"),
                   help="tf32: fp32 tensors with TF32 tensor-core maths (CUDA only)")
    p.add_argument("--peak-tflops", type=float, default=0.0,
                   help="the device's peak dense TFLOP/s for the precision measured (e.g. an H100 SXM: 989 bf16, "
                        "495 tf32, 67 fp32), to print the share of it reached")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--layout", nargs="+", default=["channels_last"], choices=("channels_last", "contiguous"),
                   help="memory layout of the convolution weights (engine.prepare's channels_last)")
    p.add_argument("--inpaint", action="store_true", help="use the mask operator (inpainting) instead of identity")
    p.add_argument("--workers", type=int, default=1,
                   help="lanes of the batched engine (on a CPU: one per core, with --threads 1)")
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
    for lm, layout in [(lm, layout) for lm in loaded for layout in a.layout]:
        model = prepare(lm, device=dev, channels_last=layout == "channels_last")
        if len(a.layout) > 1:
            print(f"# {lm.config.name}: {layout}")
        for prec in a.precision:
            if prec == "tf32" and model.device.type != "cuda":
                print(f"{lm.config.name:>14}: tf32 is a CUDA setting; skipped on {dev}")
                continue
            set_fp32_matmul(prec)
            bf16 = prec == "bf16"
            time_run(model, steps=3, bf16=bf16, perceptual=a.perceptual, task_mask=a.inpaint)  # warm-up
            times = [time_run(model, steps=a.steps, bf16=bf16, perceptual=a.perceptual, task_mask=a.inpaint)
                     for _ in range(a.repeats)]
            med = statistics.median(times)
            flops = step_flops(model, batch=1, bf16=bf16, perceptual=a.perceptual, task_mask=a.inpaint)
            print(f"{lm.config.name:>14} {model.resolution:>4}px {prec:>5}: {1 / med:7.1f} steps/s "
                  f"({med * 1000:.1f} ms/step, median of {a.repeats}); {flops / 1e9:.2f} GFLOP/step, "
                  f"{_rate(flops / med, a.peak_tflops)}", flush=True)
            base = None
            for n in a.concurrent:
                rates = [time_concurrent(model, n, steps=a.steps, bf16=bf16, perceptual=a.perceptual,
                                         task_mask=a.inpaint, workers=a.workers) for _ in range(a.repeats)]
                rate = statistics.median(rates)
                base = base or (rate if n == 1 else None)
                ratio = f" ({rate / base:.2f}x the 1-run total)" if base else ""
                fl = step_flops(model, batch=n, bf16=bf16, perceptual=a.perceptual, task_mask=a.inpaint)
                print(f"{'':>14} {model.resolution:>4}px {prec:>5}: {n} concurrent runs ({a.workers} lane(s)): {rate:7.1f} steps/s total"
                      f"{ratio}, {n / rate * 1000:.1f} ms per step of each run, "
                      f"{_rate(fl * rate / n, a.peak_tflops)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
