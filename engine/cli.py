"""Command line: `python -m engine <task> --model NAME_OR_PATH --input IMG [--mask MASK] --out DIR`.

Tasks: reconstruct, inpaint, colorize, deblur, superres, scribble, interpolate. Inpaint masks are white =
fill; scribble masks are white = stroke (without one, every non-white pixel of the input is a stroke).
Face models align the face first (dlib); other models use `--crop X,Y,SIDE` (default: the centred square).
Writes result.png (model resolution), composite.png (the result put back into the photo at the photo's own
resolution), quality.csv (PSNR/SSIM per frame), latent.pt, progress.png/.gif, loss.png (and
interpolation.gif/.mp4). Errors: one line on stderr, exit status 2.
"""
from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path

import numpy as np
import torch

from models import CheckpointError, load_model

from .config_args import add_config_options, config_from_args
from .export import loss_plot, strip, write_gif, write_mp4, write_png, write_quality_csv
from .framing import frame_photo, is_face_model
from .imageio import read_mask, read_rgb
from .interpolate import common_space, interpolation_frames, lift
from .inversion import run
from .model import EngineModel, prepare
from .photo import CropBox, mask_to_frame, photo_composite, strokes_to_frame, to_frame
from .state import EditState, save_state
from .tasks import TaskDefaults, request_for_task, strokes_from_image
from .types import TASKS, EngineError, Frame

CLI_TASKS = TASKS + ("interpolate",)
DEFAULT_MODEL = "cat64"
log = logging.getLogger("engine.cli")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine", description="LatentBrush GAN-inversion tasks")
    p.add_argument("task", choices=CLI_TASKS)
    p.add_argument("--model", default=DEFAULT_MODEL, help="bundled name (cat64, face64, ...) or checkpoint path")
    p.add_argument("--input", required=True, help="input image (scribble: the stroke image)")
    p.add_argument("--input2", help="second image (interpolate)")
    p.add_argument("--mask", help="inpaint: white = fill; scribble: white = stroke")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--crop", help="X,Y,SIDE: the square of the photo the model sees (default: centred square)")
    p.add_argument("--no-align", action="store_true", help="face models: use the crop instead of aligning the face")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--kernel-size", type=int, default=9)
    p.add_argument("--sigma", type=float, default=2.0)
    p.add_argument("--factor", type=int, default=4)
    p.add_argument("--degrade-input", action="store_true", help="deblur: blur the (sharp) input first (demo)")
    p.add_argument("--frames", type=int, default=16, help="interpolate: number of frames")
    p.add_argument("--device", default="cpu")
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--preview-every", type=int, default=10)
    return add_config_options(p)


def _config(a: argparse.Namespace, task: str, arch: str, overrides: TaskDefaults | None = None):
    cfg = config_from_args(a, task=task, arch=arch, overrides=overrides).replace(seed=a.seed, bf16=a.bf16,
                                                                                 preview_every=a.preview_every)
    cfg.validate()
    return cfg


def _crop(spec: str | None) -> CropBox | None:
    if not spec:
        return None
    try:
        x, y, side = (int(v) for v in spec.split(","))
    except ValueError:
        raise EngineError(f"--crop must be X,Y,SIDE (three whole numbers), got {spec!r}") from None
    if side <= 0:
        raise EngineError(f"--crop SIDE must be positive, got {side}")
    return CropBox(x, y, side)


def invert_file(model: EngineModel, a: argparse.Namespace, task: str, path: str, out: Path,
                *, tag: str = "") -> Frame:
    from tqdm import tqdm
    rgb = read_rgb(path)
    align = task != "scribble" and not a.no_align and is_face_model(model.config.name, model.config.domain)
    placement, note = frame_photo(rgb, model.resolution, align_face=align, crop=_crop(a.crop))
    log.info("input %s: %s", Path(path).name, note)
    photo_painted = None
    if a.mask and task in ("inpaint", "scribble"):
        photo_painted = read_mask(a.mask)
        if photo_painted.shape != rgb.shape[:2]:
            raise EngineError(f"mask size {photo_painted.shape[1]}x{photo_painted.shape[0]} does not match the "
                              f"input's {rgb.shape[1]}x{rgb.shape[0]}")
    if task == "scribble":
        # Strokes found at the input's own resolution (the app's rule), then shrunk keeping their colours.
        strokes = photo_painted if photo_painted is not None else strokes_from_image(rgb)
        target, painted = strokes_to_frame(rgb, strokes, placement)
        if not painted.any():
            raise EngineError(f"{Path(path).name}: no strokes inside the square the model sees (strokes are "
                              "the non-white pixels, or --mask's white ones)")
    else:
        target = to_frame(rgb, placement)
        painted = mask_to_frame(photo_painted, placement) if photo_painted is not None else None
    if task == "inpaint" and painted is None:
        raise EngineError("inpaint needs --mask (white = region to fill)")
    cfg = _config(a, task if task in TASKS else "reconstruct", getattr(model.G, "arch", "stylegan2"),
                  model.config.task_defaults)
    req = request_for_task(task, target, painted=painted, config=cfg, kernel_size=a.kernel_size, sigma=a.sigma,
                           factor=a.factor, degrade_input=a.degrade_input)
    frames, history, quality = [], [], []
    last = None
    with tqdm(total=cfg.total_steps, desc=f"{task}{tag}", unit="step") as bar:
        for f in run(model, req):
            bar.update(f.step - bar.n)
            bar.set_postfix(loss=f"{f.losses['total']:.4f}")
            frames.append(f.image)
            history.append((f.step, f.losses))
            quality.append((f.step, f.losses["total"], f.psnr, f.ssim))
            last = f
    for m in last.messages:
        print(f"note: {m}", file=sys.stderr)
    write_png(out / f"result{tag}.png", last.image)
    write_png(out / f"composite{tag}.png", photo_composite(task, rgb, last.image, placement, painted=photo_painted))
    write_quality_csv(out / f"quality{tag}.csv", quality)
    write_png(out / f"target{tag}.png", req.target)
    write_png(out / f"degraded{tag}.png", last.degraded)
    write_png(out / f"progress{tag}.png", strip(frames))
    write_gif(out / f"progress{tag}.gif", frames)
    write_png(out / f"loss{tag}.png", loss_plot(history))
    save_state(out / f"latent{tag}.pt", EditState(latent=last.latent, latent_space=last.latent_space,
                                                  step=last.step, model_name=model.config.name, config=cfg,
                                                  noises=last.noises, weight_deltas=last.weight_deltas))
    return last


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if a.steps is not None and a.steps <= 0:
            raise EngineError(f"--steps must be a positive integer, got {a.steps}")
        if a.lr is not None and (not math.isfinite(a.lr) or a.lr <= 0):
            raise EngineError(f"--lr must be a finite number > 0, got {a.lr}")
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        model = prepare(load_model(a.model, device=a.device), device=a.device)
        if a.task == "interpolate":
            if not a.input2:
                raise EngineError("interpolate needs --input2 (the second image)")
            if a.tune_steps:
                print("note: interpolate morphs the two latents with the shared, untuned generator; "
                      "--tune-steps is ignored", file=sys.stderr)
            # One morph needs one generator: two tuned copies cannot both hold, so no tuning here (nor the model's
            # default tuning of reconstruct).
            a.tune_steps = 0
            fa = invert_file(model, a, "reconstruct", a.input, out, tag="_a")
            fb = invert_file(model, a, "reconstruct", a.input2, out, tag="_b")
            space = common_space(fa.latent_space, fb.latent_space)
            la = lift(model, fa.latent, fa.latent_space, space)
            lb = lift(model, fb.latent, fb.latent_space, space)
            frames = list(interpolation_frames(model, la, lb, space=space, num_frames=a.frames))
            write_gif(out / "interpolation.gif", frames)
            write_mp4(out / "interpolation.mp4", frames)
            write_png(out / "interpolation.png", strip(frames, max_frames=a.frames))
            write_png(out / "result.png", frames[len(frames) // 2])
        else:
            invert_file(model, a, a.task, a.input, out)
        print(f"wrote {out / 'result.png'}")
        return 0
    except (EngineError, CheckpointError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
