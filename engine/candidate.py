"""Candidate report: a retrained checkpoint beside the shipped model on the checks that decide whether it ships.

    python -m engine.candidate CANDIDATE --shipped face64 --out DIR [--checks fid,heldout,inpaint,colorize,scribble]
        [--data DIR] [--n 48] [--steps 300] [--fake 5000] [--fid-seeds 0,1] [--scribble-seeds 0-17]
        [--soft-below 300] [--cache DIR] [--device cpu]

The checks (models/TRAINING.md's ship rule), each run on both models with the same inputs:
- `fid`: `--fake` psi-1 samples per seed against every photo of the data folder, MobileNet features
  (`models.evaluate_samples`); lower is better. Read against the shipped model's own seed-to-seed gap.
- `heldout`: reconstruction of the first `n` photos of the shipped model's held-out list (`engine.evaluate`, w+),
  compared photo by photo; `inpaint`: the same photos with the domain's eye-band mask, compared in the hole;
  `colorize`: compared on chroma RMS (lower is better). "equal" = the mean difference is within one standard error.
- `scribble`: the domain's example scribbles drawn at every seed of `--scribble-seeds`: soft draws (sharpness under
  `--soft-below`), seed spread (`engine.metrics.seed_spread`), stroke PSNR; both sheets are written to be opened.
Always written: `grid.png`, the README's psi-1 sample grid (seed 0), shipped left, candidate right.

The candidate runs with the shipped model's task defaults, the ones it would ship with: a training snapshot's JSON
carries its run's, which can predate an override the shipped model got later. With `--cache`, the shipped model's
results are kept there, keyed by its file's hash, the check's settings and the engine's source, so a training line's
later snapshots pay only for their own runs. Writes `DIR/report.md` and `DIR/report.json`.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import shutil
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models import load_model
from models.catalogue import sha256_of
from models.evaluate_samples import default_real, generate_uint8, real_features, real_files, scores
from models.loader import model_file, models_dir
from models.sample_quality import EXTRACTORS, FeatureFn

from .evaluate import COMPARED_ON, WHOLE_FRAME, evaluate, paired_comparison, sample_grid, scores_by_image
from .export import write_png
from .gallery import hole_mask, scribble_sheet
from .model import EngineModel, prepare
from .tasks import default_config

log = logging.getLogger("engine.candidate")
CHECKS = ("fid", "heldout", "inpaint", "colorize", "scribble")
PHOTO_CHECKS = {"heldout": "reconstruct", "inpaint": "inpaint", "colorize": "colorize"}
PHOTO_LABELS = {"heldout": "reconstruction PSNR (dB)", "inpaint": "inpaint, PSNR in the hole (dB)",
                "colorize": "colorize, chroma RMS (lower is better)"}


@dataclasses.dataclass(frozen=True)
class CandidateOptions:
    """What each check runs on; the defaults are the ship rule's (TRAINING.md)."""

    checks: tuple[str, ...] = CHECKS
    n: int = 48
    steps: int = 300
    fake: int = 5000
    fid_seeds: tuple[int, ...] = (0, 1)
    scribble_seeds: tuple[int, ...] = tuple(range(18))
    soft_below: float = 300.0
    data: Path | None = None


def code_digest() -> str:
    """Hash of the engine's and models' Python sources (this report's own module aside, so that its wording can
    change): a cached result is only reused by the code that made it."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent.parent
    for f in sorted([*(root / "engine").glob("*.py"), *(root / "models").glob("*.py")]):
        if f.resolve() != Path(__file__).resolve():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


def _cached(cache: Path | None, key: dict, compute: Callable[[Path], dict], out: Path) -> dict:
    """`compute(folder)` -> figures, its files written into `folder`; with `cache`, a folder named by the key's hash
    is filled once and later calls copy its files to `out` and read its figures."""
    if cache is None:
        out.mkdir(parents=True, exist_ok=True)
        return compute(out)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    entry = cache / digest
    done = entry / "figures.json"
    if not done.is_file():
        tmp = cache / f"{digest}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        figures = compute(tmp)
        (tmp / "key.json").write_text(json.dumps(key, indent=2, sort_keys=True))
        (tmp / "figures.json").write_text(json.dumps(figures, indent=2))
        shutil.rmtree(entry, ignore_errors=True)
        tmp.rename(entry)
    else:
        log.info("%s %s: cached in %s", key["check"], key["model"], entry)
    out.mkdir(parents=True, exist_ok=True)
    for f in entry.iterdir():
        if f.name not in ("key.json", "figures.json"):
            shutil.copy2(f, out / f.name)
    return json.loads(done.read_text())


def fid_figures(model: EngineModel, real: np.ndarray, extract: FeatureFn, *, fake: int,
                seeds: tuple[int, ...]) -> dict:
    """{seed: {fid, kid, kid_std}} of `fake` psi-1 samples per seed against the real features (`extract`'s)."""
    return {str(s): scores(real, extract(generate_uint8(model.G, fake, seed=s))) for s in seeds}


def photo_figures(model: EngineModel, files: list[Path], task: str, *, steps: int, out: Path) -> dict:
    """`engine.evaluate` figures (per image kept) of one task on the held-out photos; its rows saved in `out`."""
    fill = hole_mask(model, model.resolution) if task == "inpaint" else None
    figures, rows = evaluate(model, files, steps=steps, task=task, fill=fill)
    write_png(out / f"{task}.png", np.concatenate([np.concatenate(r, axis=1) for r in rows[:16]], axis=0))
    return figures


def scribble_figures(model: EngineModel, *, seeds: tuple[int, ...], soft_below: float, out: Path) -> dict:
    """{scribble file: {soft, draws, spread, strokes_psnr, sharpness_min}} over the seeds; the sheet in `out`."""
    cfg = default_config("scribble", arch=getattr(model.G, "arch", model.config.arch),
                         overrides=model.config.task_defaults)
    cfg = cfg.replace(preview_every=cfg.steps)
    rows, spreads = scribble_sheet(model, cfg, seeds, out / "scribble.png", f"{model.config.name} scribble")
    figures = {}
    for name, spread in spreads.items():
        mine = [r for r in rows if r.photo.startswith(f"{name} ")]
        figures[name] = {"draws": len(mine), "soft": sum(r.sharpness < soft_below for r in mine),
                         "spread": spread, "strokes_psnr": statistics.fmean(r.psnr_known for r in mine),
                         "sharpness_min": min(r.sharpness for r in mine)}
    return figures


def with_task_defaults(model: EngineModel, task_defaults: dict) -> EngineModel:
    """The same model inverted with other task defaults (the shipped model's, for a candidate)."""
    return dataclasses.replace(model, config=model.config.replace(task_defaults=task_defaults))


def compare(candidate: str, shipped: str, out: Path, *, options: CandidateOptions = CandidateOptions(),
            cache: Path | None = None, device: str = "cpu") -> dict:
    """Run the checks on both models -> the report (also written as `out/report.json` and `out/report.md`)."""
    out.mkdir(parents=True, exist_ok=True)
    base = prepare(load_model(shipped, device=device), device=device)
    cand = prepare(load_model(candidate, device=device), device=device)
    if cand.resolution != base.resolution:
        raise ValueError(f"the candidate draws {cand.resolution} px, the shipped model {base.resolution} px")
    own_defaults = cand.config.task_defaults
    cand = with_task_defaults(cand, base.config.task_defaults)
    shas = {"shipped": sha256_of(model_file(shipped)), "candidate": sha256_of(model_file(candidate))}
    folder, names = default_real(base.config.name, base.config.domain)
    folder = options.data or folder
    report: dict = {"candidate": {"path": candidate, "images_seen": cand.config.images_seen,
                                  "sha256": shas["candidate"], "own_task_defaults": own_defaults},
                    "shipped": {"path": shipped, "images_seen": base.config.images_seen, "sha256": shas["shipped"]},
                    "task_defaults": base.config.task_defaults, "options": _jsonable(options), "checks": {}}
    write_png(out / "grid.png", np.concatenate([sample_grid(base), np.full((base.resolution * 8, 8, 3), 255, np.uint8),
                                               sample_grid(cand)], axis=1))
    photos: list[Path] = []
    if set(options.checks) & set(PHOTO_CHECKS):
        if names is None:
            raise ValueError(f"{base.config.name} has no held-out list in {models_dir()}")
        # real_files keeps the folder's order; the held-out list's order is the README's (its first photos).
        order = {n: i for i, n in enumerate(names)}
        photos = sorted(real_files(folder, names=names), key=lambda p: order[p.name])[: options.n]
    real, code = None, code_digest()
    for check in options.checks:
        runs = {}
        for role, model in (("shipped", base), ("candidate", cand)):
            key = {"check": check, "model": shas[role], "task_defaults": model.config.task_defaults, "code": code}
            dest = out / check / role
            if check == "fid":
                if real is None:  # one MobileNet for the photos and both models' samples
                    files = real_files(folder)
                    extract = EXTRACTORS["mobilenet"]()
                    real = real_features(files, base.resolution, {"mobilenet": extract},
                                         cache=cache / "features" if cache else None)["mobilenet"]
                    report["real_photos"] = f"{folder.name} ({len(files):,} photos)"
                    # The key keeps its wording from before the report printed separators: old entries stay valid.
                    real_key = f"{folder.name} ({len(files)} photos)"
                key.update(fake=options.fake, seeds=options.fid_seeds, real=real_key)
                runs[role] = _cached(cache, key, lambda _d, m=model: fid_figures(
                    m, real, extract, fake=options.fake, seeds=options.fid_seeds), dest)
            elif check in PHOTO_CHECKS:
                key.update(steps=options.steps, photos=[p.name for p in photos])
                runs[role] = _cached(cache, key, lambda d, m=model: photo_figures(
                    m, photos, PHOTO_CHECKS[check], steps=options.steps, out=d), dest)
            elif check == "scribble":
                key.update(seeds=options.scribble_seeds, soft_below=options.soft_below)
                runs[role] = _cached(cache, key, lambda d, m=model: scribble_figures(
                    m, seeds=options.scribble_seeds, soft_below=options.soft_below, out=d), dest)
            else:
                raise ValueError(f"unknown check {check!r}; expected some of {', '.join(CHECKS)}")
        report["checks"][check] = {**runs, **_reading(check, runs)}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return report


def _jsonable(options: CandidateOptions) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}


def _reading(check: str, runs: dict) -> dict:
    """How the candidate reads against the shipped model on one check."""
    if check == "fid":
        seeds = sorted(runs["shipped"].keys() & runs["candidate"].keys())
        diff = statistics.fmean(runs["candidate"][s]["fid"] - runs["shipped"][s]["fid"] for s in seeds)
        shipped = [runs["shipped"][s]["fid"] for s in seeds]
        gap = max(shipped) - min(shipped) if len(shipped) > 1 else float("nan")
        reads = ("" if not math.isfinite(gap) else "better" if diff < -gap else "worse" if diff > gap else "equal")
        return {"mean_diff": diff, "seed_gap": gap, "reads": reads}
    if check in PHOTO_CHECKS:
        score = COMPARED_ON.get(PHOTO_CHECKS[check], WHOLE_FRAME)
        paired = paired_comparison(scores_by_image(runs["candidate"], score=score.key),
                                   scores_by_image(runs["shipped"], score=score.key),
                                   lower_is_better=score.lower_is_better)
        gain = -paired["mean_diff"] if score.lower_is_better else paired["mean_diff"]
        reads = "equal" if abs(gain) <= paired["stderr"] else "better" if gain > 0 else "worse"
        return {"score": score.key, "paired": paired, "reads": reads}
    return {}


def _f(v: float, digits: int = 2) -> str:
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def markdown(report: dict) -> str:
    """The report as a table: a row per figure, shipped beside candidate, with the difference and its reading."""
    c, s = report["candidate"], report["shipped"]
    lines = [f"# Candidate {c['path']} ({c['images_seen']:,} images) against {s['path']} ({s['images_seen']:,})", "",
             f"Inverted with the shipped model's task defaults: `{json.dumps(report['task_defaults'])}`"
             + ("" if c["own_task_defaults"] == report["task_defaults"]
                else f" (the candidate's own: `{json.dumps(c['own_task_defaults'])}`)"), "",
             "| check | shipped | candidate | candidate − shipped | reads |", "|---|---|---|---|---|"]
    checks = report["checks"]
    if "fid" in checks:
        r = checks["fid"]
        for seed in r["shipped"]:
            lines.append(f"| {report['options']['fake']:,}-sample MobileNet FID against {report['real_photos']}, "
                         f"sample seed {seed} | {_f(r['shipped'][seed]['fid'])} | {_f(r['candidate'][seed]['fid'])} "
                         f"| {r['candidate'][seed]['fid'] - r['shipped'][seed]['fid']:+.2f} | |")
        lines.append(f"| FID, mean over the seeds (lower is better) | | | {r['mean_diff']:+.2f} (the shipped model's "
                     f"seed-to-seed gap {_f(r['seed_gap'])}) | {r['reads']} |")
    for check, task in PHOTO_CHECKS.items():
        if check not in checks:
            continue
        r, score = checks[check], COMPARED_ON.get(task, WHOLE_FRAME)
        p = r["paired"]
        mean = score.key + "_mean"
        lines.append(f"| {PHOTO_LABELS[check]}, {p['images']} held-out photos | {_f(r['shipped'][mean])} | "
                     f"{_f(r['candidate'][mean])} | {p['mean_diff']:+.2f} ± {p['stderr']:.2f}{score.unit}, better on "
                     f"{p['better']}, worse on {p['worse']} | {r['reads']} |")
    if "scribble" in checks:
        r = checks["scribble"]
        below = report["options"]["soft_below"]
        for name in r["shipped"]:
            a, b = r["shipped"][name], r["candidate"].get(name)
            if b is None:
                continue
            lines += [f"| {name}: soft draws (sharpness under {below:g}) of {a['draws']} | {a['soft']} | {b['soft']} "
                      f"| {b['soft'] - a['soft']:+d} | |",
                      f"| {name}: seed spread (0 = the same picture at every seed) | {_f(a['spread'], 1)} | "
                      f"{_f(b['spread'], 1)} | {b['spread'] - a['spread']:+.1f} | |",
                      f"| {name}: stroke PSNR (dB) | {_f(a['strokes_psnr'])} | {_f(b['strokes_psnr'])} | "
                      f"{b['strokes_psnr'] - a['strokes_psnr']:+.2f} | |"]
    lines += ["", "Open before shipping: `grid.png` (the psi-1 sample grid, seed 0: shipped left, candidate right)"
              + (", `scribble/shipped/scribble.png` and `scribble/candidate/scribble.png`" if "scribble" in checks
                 else "")
              + "".join(f", `{check}/candidate/{PHOTO_CHECKS[check]}.png`" for check in PHOTO_CHECKS if check in checks)
              + ". A blind count of broken samples (`python -m models.blind_grids`) is not part of this report."]
    return "\n".join(lines) + "\n"


def _seeds(text: str) -> tuple[int, ...]:
    """"0,1,5" or "0-17" (or a mix) -> the seeds in order."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part[1:]:
            lo, hi = part.split("-", 1)
            seeds += range(int(lo), int(hi) + 1)
        elif part:
            seeds.append(int(part))
    if not seeds:
        raise ValueError("no seeds")
    return tuple(seeds)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.candidate", description=__doc__.splitlines()[0])
    p.add_argument("candidate", help="the retrained checkpoint (a .safetensors path or a bundled name)")
    p.add_argument("--shipped", required=True, help="the model it would replace (a bundled name or a path)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--checks", default=",".join(CHECKS), help=f"some of {','.join(CHECKS)}")
    p.add_argument("--data", type=Path, help="the photo folder (default ../shared/data/<the shipped model's domain>)")
    p.add_argument("--n", type=int, default=CandidateOptions.n, help="held-out photos for the photo checks")
    p.add_argument("--steps", type=int, default=CandidateOptions.steps)
    p.add_argument("--fake", type=int, default=CandidateOptions.fake, help="samples per FID seed")
    p.add_argument("--fid-seeds", default="0,1")
    p.add_argument("--scribble-seeds", default="0-17")
    p.add_argument("--soft-below", type=float, default=CandidateOptions.soft_below,
                   help="a scribble draw with sharpness under this counts as soft")
    p.add_argument("--cache", type=Path, help="keep the shipped model's results (and the photos' features) here")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    checks = tuple(c for c in a.checks.split(",") if c)
    bad = [c for c in checks if c not in CHECKS]
    try:
        if bad:
            raise ValueError(f"unknown check(s) {', '.join(bad)}; expected some of {', '.join(CHECKS)}")
        options = CandidateOptions(checks=checks, n=a.n, steps=a.steps, fake=a.fake, fid_seeds=_seeds(a.fid_seeds),
                                   scribble_seeds=_seeds(a.scribble_seeds), soft_below=a.soft_below, data=a.data)
        compare(a.candidate, a.shipped, a.out, options=options, cache=a.cache, device=a.device)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print((a.out / "report.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
