"""Held-out quality report: reconstruct images through the engine (w+, fixed steps), print mean PSNR/SSIM,
write an 8x8 sample grid and a (target | result) reconstruction grid.

CLI: `python -m engine.evaluate MODEL --images DIR [--names LIST.txt] [--n 32] [--steps 300] [--perceptual NET]
[--task reconstruct|inpaint|colorize|deblur [--mask FILL.png]] [--baseline OLD_OUT] --out DIR`. Other tasks degrade
the held-out image (inpaint: white = hole in `--mask`; deblur: blurred first) and score the result against the
clean original.
`--tune-steps N [--tune-lr LR]` adds pivotal tuning after the latent search: the figures then hold the untuned
(end of the latent search, prefix 'untuned_') and tuned scores of the same runs, each stage's steps/s and the
peak RSS; rows gain the untuned result before the tuned one. figures.json keeps each image's scores, and
`--baseline` (an earlier run's figures.json, or its folder) reads the new run against it photo by photo: mean
PSNR difference ± its standard error and how many photos got better, because two checkpoints' means over a few
dozen photos differ by less than the photos' own spread. Inpaint runs also score the hole alone ('psnr_hole'),
and their `--baseline` comparison is made there; colorize runs also score the colour error ('chroma_rms': the
result's colour on the photo's own luminance, as the app shows it; lower is better), and compare there.
(It lives in `engine` because it runs the engine; `models` must not import `engine`.)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models import load_model

from .export import write_png
from .imageio import fit_mask, fit_square, read_rgb
from .inversion import run, to_uint8
from .metrics import chroma_rms, psnr, ssim
from .model import EngineModel, prepare
from .photo import chroma, from_luma_chroma, luma
from .tasks import default_config, project_target, request_for_task
from .types import PERCEPTUALS, InversionConfig, InversionRequest, LossWeights, TuningConfig

log = logging.getLogger("engine.evaluate")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclasses.dataclass(frozen=True)
class Score:
    """The per-image figure (a `per_image` key) that runs of a task are compared on, and how it reads."""
    key: str
    where: str = ""
    unit: str = " dB"
    lower_is_better: bool = False


# Inpaint runs are compared in the hole: the known pixels carry no news about the generator's fill; colorize runs
# on the colour error, as the luminance is the user's own. Other tasks on the whole frame's PSNR.
COMPARED_ON = {"inpaint": Score("psnr_hole", " in the hole"),
               "colorize": Score("chroma_rms", " in chroma RMS", unit="", lower_is_better=True)}
WHOLE_FRAME = Score("psnr")


@torch.inference_mode()
def sample_grid(model: EngineModel, *, n: int = 8, seed: int = 0, psi: float = 1.0) -> np.ndarray:
    """n x n uint8 RGB grid of G(z) for fixed seeds."""
    G = model.G
    z = torch.randn(n * n, G.z_dim, generator=torch.Generator().manual_seed(seed)).to(model.device)
    imgs = [to_uint8(G(z[i:i + 1], truncation_psi=psi, noise_mode="const")) for i in range(n * n)]
    rows = [np.concatenate(imgs[r * n:(r + 1) * n], axis=1) for r in range(n)]
    return np.concatenate(rows, axis=0)


def evaluate(model: EngineModel, files: list[Path], *, steps: int = 300, config: InversionConfig | None = None,
             task: str = "reconstruct", perceptual: str | None = None,
             fill: np.ndarray | None = None,
             tuning: TuningConfig | None = None) -> tuple[dict, list[tuple[np.ndarray, ...]]]:
    """Mean/median PSNR and SSIM of w+ results against the clean images -> (figures, [(input, result[, clean])]).

    `fill`: bool `[R, R]`, True = hole (inpaint). Reconstruction rows are (target, result)."""
    if config is None and task == "reconstruct":
        config = InversionConfig(latent_space="w+", steps=steps, preview_every=steps,
                                 weights=LossWeights(l2=1.0, perceptual=0.3))
    cfg = config or default_config(task, arch=model.config.arch, overrides=model.config.task_defaults).replace(
        steps=steps, preview_every=steps)
    if perceptual is not None:
        cfg = dataclasses.replace(cfg, perceptual=perceptual)
    if tuning is not None:
        cfg = dataclasses.replace(cfg, tuning=tuning)
    tuned = cfg.tuning.steps > 0
    rows, ps, ss, secs, per_image = [], [], [], [], {}
    ps0, ss0, tune_secs = [], [], []
    for f in files:
        target, _ = fit_square(read_rgb(f), model.resolution)
        req = (InversionRequest(target=target, config=cfg) if task == "reconstruct" else
               request_for_task(task, target, painted=fill, config=cfg, degrade_input=True))
        t0 = time.perf_counter()
        pivot = result = None
        for frame in run(model, req):
            if frame.step == cfg.steps:  # end of the latent search: the untuned result
                pivot, t1 = frame.image, time.perf_counter()
            result = frame.image
        secs.append(time.perf_counter() - t0)
        if tuned:
            tune_secs.append(time.perf_counter() - t1)
            ps0.append(psnr(target, pivot))
            ss0.append(ssim(target, pivot))
            log.info("%s: untuned PSNR %.2f dB  SSIM %.3f", f.name, ps0[-1], ss0[-1])
        if task == "reconstruct":
            rows.append((target, pivot, result) if tuned else (target, result))
        else:
            shown = project_target(req) if task != "deblur" else req.target
            if fill is not None:
                shown = np.where(fill[..., None], 128, shown).astype(np.uint8)
            rows.append((shown, pivot, result, target) if tuned else (shown, result, target))
        ps.append(psnr(target, result))
        ss.append(ssim(target, result))
        per_image[f.name] = {"psnr": ps[-1], "ssim": ss[-1]}
        if fill is not None and task == "inpaint":
            # The known pixels are the user's own, so the whole frame's PSNR dilutes what the fill got right.
            per_image[f.name]["psnr_hole"] = psnr(target, result, fill)
        if task == "colorize":
            per_image[f.name]["chroma_rms"] = colour_error(target, result)
        log.info("%s: PSNR %.2f dB  SSIM %.3f  %.1f s", f.name, ps[-1], ss[-1], secs[-1])
    figures = {"images": len(files), "task": task, "perceptual": cfg.perceptual if cfg.weights.perceptual > 0
               else "none", "steps": cfg.steps, "latent_space": cfg.latent_space,
               "psnr_mean": statistics.fmean(ps), "psnr_median": statistics.median(ps),
               "ssim_mean": statistics.fmean(ss), "ssim_median": statistics.median(ss),
               "seconds_mean": statistics.fmean(secs),
               "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "per_image": per_image}
    holes = [s["psnr_hole"] for s in per_image.values() if "psnr_hole" in s]
    if holes:
        figures.update(psnr_hole_mean=statistics.fmean(holes), psnr_hole_median=statistics.median(holes))
    colour = [s["chroma_rms"] for s in per_image.values() if "chroma_rms" in s]
    if colour:
        figures.update(chroma_rms_mean=statistics.fmean(colour), chroma_rms_median=statistics.median(colour))
    if tuned:
        figures.update(tune_steps=cfg.tuning.steps, tune_lr=cfg.tuning.lr, tune_locality=cfg.tuning.locality,
                       untuned_psnr_mean=statistics.fmean(ps0), untuned_psnr_median=statistics.median(ps0),
                       untuned_ssim_mean=statistics.fmean(ss0),
                       latent_steps_per_s=cfg.steps * len(secs) / (sum(secs) - sum(tune_secs)),
                       tune_steps_per_s=cfg.tuning.steps * len(secs) / sum(tune_secs))
    return figures, rows


def colour_error(target: np.ndarray, result: np.ndarray) -> float:
    """RMS of the (Cb, Cr) error, 0..255 scale, of a colorize result shown as the app shows it: the result's
    colour on the target's own luminance (`photo.from_luma_chroma`), so only the colour a user sees is scored."""
    return chroma_rms(from_luma_chroma(luma(target), chroma(result)), target)


def paired_comparison(scores: dict[str, float], baseline: dict[str, float], *,
                      lower_is_better: bool = False) -> dict:
    """Photo-by-photo difference `scores - baseline` over the names both hold -> {images, mean_diff, stderr,
    better, worse}; stderr is the standard error of the mean difference (0 for a single photo); `better` counts
    rises, or falls when `lower_is_better` (an error such as chroma RMS)."""
    names = sorted(scores.keys() & baseline.keys())
    if not names:
        raise ValueError("the run and its baseline share no image names")
    diffs = [scores[n] - baseline[n] for n in names]
    stderr = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
    return {"images": len(diffs), "mean_diff": statistics.fmean(diffs), "stderr": stderr,
            "better": sum(d < 0 if lower_is_better else d > 0 for d in diffs),
            "worse": sum(d > 0 if lower_is_better else d < 0 for d in diffs)}


def scores_by_image(figures: dict, *, score: str = "psnr") -> dict[str, float]:
    """{name: value} of one per-image score ("psnr", "psnr_hole" for inpaint runs, "chroma_rms" for colorize)
    from a run's figures (KeyError when they hold no such per-image scores)."""
    return {name: s[score] for name, s in figures["per_image"].items()}


def read_baseline(path: str | Path, *, score: str = "psnr") -> dict[str, float]:
    """Per-image `score` of an earlier run's figures.json (the file or its folder) -> {name: value}."""
    path = Path(path)
    if path.is_dir():
        path = path / "figures.json"
    try:
        return scores_by_image(json.loads(path.read_text()), score=score)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read baseline {path}: {e}") from e
    except KeyError:
        raise ValueError(f"baseline {path} has no per-image scores of {score!r} (written before they were kept, "
                         "or by another task)") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--images", required=True, help="folder of held-out images")
    p.add_argument("--names", help="text file listing which files of --images to use (e.g. a heldout.txt)")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--perceptual", choices=PERCEPTUALS, help="perceptual network (default: the task's default)")
    p.add_argument("--task", default="reconstruct", choices=("reconstruct", "inpaint", "colorize", "deblur"))
    p.add_argument("--mask", help="inpaint: fill mask image (white = hole), fitted to the model's resolution")
    p.add_argument("--tune-steps", type=int, default=0, help="pivotal tuning steps after the latent search (0 = off)")
    p.add_argument("--tune-lr", type=float, help=f"pivotal tuning learning rate (default {TuningConfig.lr:g})")
    p.add_argument("--baseline", help="an earlier run's figures.json (or its folder) to compare with photo by photo")
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
    if a.task == "inpaint" and not a.mask:
        print("error: --task inpaint needs --mask", file=sys.stderr)
        return 2
    score = COMPARED_ON.get(a.task, WHOLE_FRAME)
    try:  # before the long run, so a wrong path fails at once
        baseline = read_baseline(a.baseline, score=score.key) if a.baseline else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = prepare(load_model(a.model, device=a.device), device=a.device)
    fill = fit_mask(read_rgb(a.mask).mean(axis=-1) > 127, model.resolution) if a.mask else None
    tuning = TuningConfig(steps=a.tune_steps, **({} if a.tune_lr is None else {"lr": a.tune_lr}))
    tuning.validate(InversionConfig.max_steps)
    figures, pairs = evaluate(model, files, steps=a.steps, task=a.task, perceptual=a.perceptual, fill=fill,
                              tuning=tuning)
    failed = None
    if baseline is not None:
        try:
            figures["baseline"] = {"path": a.baseline, "score": score.key,
                                   **paired_comparison(scores_by_image(figures, score=score.key), baseline,
                                                       lower_is_better=score.lower_is_better)}
        except ValueError as e:  # the run's own report is still written
            failed = f"error: {e} ({a.baseline})"
    out = Path(a.out)
    write_png(out / "samples.png", sample_grid(model))
    rows = [np.concatenate(row, axis=1) for row in pairs[:16]]
    name = "reconstructions.png" if a.task == "reconstruct" else f"{a.task}.png"
    write_png(out / name, np.concatenate(rows, axis=0))
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    print(f"{model.config.name}: {figures['images']} held-out images, {a.task}, perceptual {figures['perceptual']}, "
          f"{figures['latent_space']} {figures['steps']} steps: "
          f"PSNR {figures['psnr_mean']:.2f} dB (median {figures['psnr_median']:.2f}), "
          f"SSIM {figures['ssim_mean']:.3f} (median {figures['ssim_median']:.3f}), "
          f"{figures['seconds_mean']:.1f} s per image, peak RSS {figures['peak_rss_mib']:.0f} MiB")
    if "psnr_hole_mean" in figures:
        print(f"  in the hole: PSNR {figures['psnr_hole_mean']:.2f} dB (median {figures['psnr_hole_median']:.2f})")
    if "chroma_rms_mean" in figures:
        print(f"  colour shown on the photo's luminance: chroma RMS {figures['chroma_rms_mean']:.2f} (median "
              f"{figures['chroma_rms_median']:.2f}; 0..255 scale, lower is better)")
    if a.tune_steps > 0:
        print(f"  untuned (same runs at step {a.steps}): PSNR {figures['untuned_psnr_mean']:.2f} dB (median "
              f"{figures['untuned_psnr_median']:.2f}), SSIM {figures['untuned_ssim_mean']:.3f}; tuning {a.tune_steps} "
              f"steps at lr {tuning.lr:g}: {figures['tune_steps_per_s']:.2f} steps/s (latent search "
              f"{figures['latent_steps_per_s']:.2f} steps/s); rows show the untuned result before the tuned one")
    if failed:
        print(failed, file=sys.stderr)
        return 2
    if baseline is not None:
        b = figures["baseline"]
        print(f"  against {a.baseline}{score.where}, photo by photo: {b['mean_diff']:+.2f} ± {b['stderr']:.2f}"
              f"{score.unit} (standard error) over {b['images']} shared images, better on {b['better']}, "
              f"worse on {b['worse']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
