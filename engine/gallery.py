"""Gallery: every photo task on a fixed set of held-out photos, and scribbles -> a contact sheet per task, a table.

    python -m engine.gallery --model face64 --out DIR [--n 3] [--steps 200] [--tasks inpaint,colorize,scribble]
                             [--latent-space w] [--realism 0.05] [--lr 0.05] [--perceptual 0.3] [--latent-dist 0.01]

Photos: the first `n` names of `assets/models/<model>.heldout.txt` (never trained on) found in `--data`
(default `../shared/data/<the model's domain>`), plus the bundled example photo of the domain (astronaut.png for
faces, chelsea.png for cats). Each photo is framed as the CLI frames it (`engine.framing`), degraded in the frame
(inpaint: the bundled eye-band mask; colorize: the photo in grey at full resolution; deblur: blur; superres:
downsampling), inverted with the task's defaults (`engine.tasks.default_config`) or the overrides given, and put
back into the photo (`engine.photo.photo_composite`). Sheets (`<model>_<task>.png`: input, what the loss compares,
result, composite) and `<model>.md` / `<model>.csv`: PSNR/SSIM of the result against the true frame on the known
pixels and in the hole, chroma error (RMS of Cb/Cr of the composite vs the true colours, inside the frame),
luminance fidelity (PSNR of the composite's Y vs the input photo's Y), the result's sharpness (variance of the
Laplacian at model resolution, `engine.metrics.sharpness`; a soft or smeared result scores low), seconds per run.
Scribble: the bundled example scribbles of the domain (`assets/examples/scribble_<cat|face|grumpy>*_256.png`),
shrunk as the app and the CLI shrink them, each drawn with seeds 0, 1, 2 (`--seeds`); PSNR / SSIM on the stroke
pixels (the only known pixels) and each drawing's sharpness, so that soft draws can be counted over many seeds, and
under the table each scribble's seed spread (`engine.metrics.seed_spread`), which falls towards 0 when every seed
draws the same picture.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import logging
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models import load_model

from .config_args import add_config_options, config_from_args
from .export import write_png
from .framing import frame_photo, is_face_model
from .imageio import read_mask, read_rgb
from .inversion import run
from .metrics import chroma_rms, psnr, seed_spread, sharpness, ssim
from .model import EngineModel, prepare
from .photo import Placement, footprint, from_frame, luma, photo_composite, strokes_to_frame, to_frame
from .tasks import TaskDefaults, project_target, request_for_task, strokes_from_image
from .types import InversionConfig

log = logging.getLogger("engine.gallery")
ROOT = Path(__file__).resolve().parent.parent
PHOTO_TASKS = ("reconstruct", "inpaint", "colorize", "deblur", "superres")
GALLERY_TASKS = PHOTO_TASKS + ("scribble",)
CELL = 128
COLUMNS = ("input", "what the loss compares", "result", "composite")
SCRIBBLE_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class Row:
    """One task on one photo: the figures of the table."""

    task: str
    photo: str
    psnr_known: float
    ssim_known: float
    psnr_hole: float
    ssim_hole: float
    chroma_rms: float
    y_psnr: float
    sharpness: float  # of the result at model resolution (engine.metrics.sharpness): a soft or smeared draw scores low
    seconds: float


def photo_paths(model: EngineModel, *, n: int, data: Path | None) -> list[Path]:
    """The first `n` held-out photos found on disk, then the bundled example photo of the model's domain."""
    name, domain = model.config.name, model.config.domain
    listing = ROOT / "assets" / "models" / f"{name}.heldout.txt"
    folder = data or ROOT.parent / "shared" / "data" / domain
    paths: list[Path] = []
    if listing.is_file() and folder.is_dir():
        for line in listing.read_text(encoding="utf-8").split():
            if len(paths) >= n:
                break
            if (folder / line).is_file():
                paths.append(folder / line)
    if n and not paths:
        log.warning("no held-out photos found (%s in %s): bundled examples only", listing.name, folder)
    example = "astronaut.png" if is_face_model(name, domain) else "chelsea.png"
    paths.append(ROOT / "assets" / "examples" / example)
    return paths


def hole_mask(model: EngineModel, size: int) -> np.ndarray:
    """The bundled eye-band mask of the domain (painted = True) at the frame's size."""
    name = "mask64_face_eyes.png" if is_face_model(model.config.name, model.config.domain) else "mask64_cat_eyes.png"
    m = read_mask(ROOT / "assets" / "examples" / name).astype(np.uint8)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_NEAREST) > 0


def grey(rgb: np.ndarray) -> np.ndarray:
    y = np.clip(np.rint(luma(rgb)), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=2)


def run_one(model: EngineModel, task: str, photo: np.ndarray, placement: Placement, config: InversionConfig
            ) -> tuple[Row, list[np.ndarray]]:
    """Degrade, invert, composite and measure one photo; returns the row and the sheet's four cells."""
    r = model.resolution
    truth = to_frame(photo, placement)
    given = grey(photo) if task == "colorize" else photo  # what the user would upload
    painted = hole_mask(model, r) if task == "inpaint" else None
    painted_photo = None
    if painted is not None:
        painted_photo = from_frame(painted.astype(np.float32), placement) > 0.5
        painted_photo &= footprint(placement, feather=0) > 0
    req = request_for_task(task, to_frame(given, placement), painted=painted, config=config,
                           degrade_input=task == "deblur")
    t0 = time.perf_counter()
    final = list(run(model, req))[-1]
    seconds = time.perf_counter() - t0
    result = final.image
    comp = photo_composite(task, given, result, placement, painted=painted_photo)
    known = np.ones((r, r), bool) if painted is None else ~painted
    nan = float("nan")
    colour = chroma_rms(comp, photo, footprint(placement) >= 1) if task == "colorize" else nan
    y_ref = luma(given if comp.shape == given.shape else cv2.resize(given, comp.shape[1::-1],
                                                                  interpolation=cv2.INTER_CUBIC))
    y_mse = float(((luma(comp) - y_ref) ** 2).mean())
    row = Row(task=task, photo="", psnr_known=psnr(result, truth, known), ssim_known=ssim(result, truth, known),
              psnr_hole=psnr(result, truth, painted) if painted is not None else nan,
              ssim_hole=_hole_ssim(result, truth, painted) if painted is not None else nan,
              chroma_rms=colour, y_psnr=10 * math.log10(255 ** 2 / max(y_mse, 1e-10)), sharpness=sharpness(result),
              seconds=seconds)
    shown_in = given.copy()
    if painted_photo is not None:
        shown_in[painted_photo] = (255, 0, 140)
    loss_view = project_target(req)
    if painted is not None:
        loss_view = loss_view.copy()
        loss_view[painted] = 235
    return row, [shown_in, loss_view, result, comp]


def scribble_paths(model: EngineModel) -> list[Path]:
    """The bundled example scribbles of the model's domain (faces, Grumpy Cat, or cats)."""
    name, domain = model.config.name, model.config.domain
    kind = "face" if is_face_model(name, domain) else "grumpy" if "grumpy" in f"{name} {domain}" else "cat"
    return sorted((ROOT / "assets" / "examples").glob(f"scribble_{kind}*_256.png"))


def run_scribble(model: EngineModel, scribble: np.ndarray, config: InversionConfig, seeds: tuple[int, ...]
                 ) -> tuple[list[Row], list[np.ndarray]]:
    """One scribble drawn with each seed: a row per seed, and the sheet's cells (the scribble, what the loss
    compares, a result per seed)."""
    placement, _ = frame_photo(scribble, model.resolution, align_face=False)
    target, strokes = strokes_to_frame(scribble, strokes_from_image(scribble), placement)
    rows, cells = [], [scribble, target]
    nan = float("nan")
    for seed in seeds:
        req = request_for_task("scribble", target, painted=strokes, config=config.replace(seed=seed))
        t0 = time.perf_counter()
        result = list(run(model, req))[-1].image
        rows.append(Row(task="scribble", photo=f"seed {seed}", psnr_known=psnr(result, target, strokes),
                        ssim_known=ssim(result, target, strokes), psnr_hole=nan, ssim_hole=nan, chroma_rms=nan,
                        y_psnr=nan, sharpness=sharpness(result), seconds=time.perf_counter() - t0))
        cells.append(result)
    return rows, cells


def _hole_ssim(a: np.ndarray, b: np.ndarray, hole: np.ndarray) -> float:
    """SSIM over the hole's bounding box (SSIM windows need neighbours; the hole alone is too thin)."""
    ys, xs = np.nonzero(hole)
    y0, y1, x0, x1 = max(ys.min() - 3, 0), ys.max() + 4, max(xs.min() - 3, 0), xs.max() + 4
    ca, cb = a[y0:y1, x0:x1], b[y0:y1, x0:x1]
    if min(ca.shape[:2]) < 11:
        return float("nan")
    return ssim(ca, cb)


def _cell(rgb: np.ndarray) -> np.ndarray:
    """Fit into a CELL x CELL white square: enlarged with nearest neighbour (model pixels stay visible), shrunk
    with area averaging."""
    h, w = rgb.shape[:2]
    s = CELL / max(h, w)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    img = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
    out = np.full((CELL, CELL, 3), 255, np.uint8)
    y, x = (CELL - img.shape[0]) // 2, (CELL - img.shape[1]) // 2
    out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def contact_sheet(title: str, rows: list[list[np.ndarray]], captions: list[str], *,
                  columns: tuple[str, ...] = COLUMNS) -> np.ndarray:
    """Rows of cells (one per column) under a header line and the column names; a caption under each row."""
    gap, head, cap = 4, 34, 14
    width = len(columns) * (CELL + gap) + gap
    height = head + len(rows) * (CELL + cap + gap) + gap
    sheet = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(sheet, title, (gap, 13), font, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    for j, name in enumerate(columns):
        cv2.putText(sheet, name, (gap + j * (CELL + gap), 29), font, 0.36, (60, 60, 60), 1, cv2.LINE_AA)
    for i, (cells, caption) in enumerate(zip(rows, captions)):
        y = head + i * (CELL + cap + gap)
        for j, img in enumerate(cells):
            x = gap + j * (CELL + gap)
            sheet[y:y + CELL, x:x + CELL] = _cell(img)
        cv2.putText(sheet, caption, (gap, y + CELL + 11), font, 0.33, (60, 60, 60), 1, cv2.LINE_AA)
    return sheet


def save_sheet(path: Path, sheet: np.ndarray) -> Path:
    """PNG with a 256-colour palette (dithered): a quarter of the bytes of a full-colour sheet, for the repo. The
    sheet's flat colours (a scribble's strokes, the page) keep palette entries of their own, exact."""
    from PIL import Image  # noqa: PLC0415 - only the gallery needs Pillow's quantiser
    img = Image.fromarray(np.ascontiguousarray(sheet))
    flat = flat_colours(sheet)
    # Median cut alone gave an 18-seed scribble sheet's small blue eye strokes the teal of the photos' grounds:
    # the drawing a reader compares the results with must show the colours that were drawn.
    cut = img.quantize(colors=256 - len(flat), method=Image.Quantize.MEDIANCUT)
    palette = Image.new("P", (1, 1))
    palette.putpalette(cut.getpalette()[:3 * (256 - len(flat))] + flat.reshape(-1).tolist())
    img.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).save(path, optimize=True)
    return path


def flat_colours(rgb: np.ndarray, *, min_pixels: int = 64, most: int = 64) -> np.ndarray:
    """The exact colours that fill at least `min_pixels` pixels, most frequent first, at most `most`: `[K, 3]` uint8."""
    codes = rgb.reshape(-1, 3).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    values, counts = np.unique(codes, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:most]
    values = values[order][counts[order] >= min_pixels]
    return np.stack([values >> 16, (values >> 8) & 255, values & 255], axis=1).astype(np.uint8)


def _fmt(v: float, digits: int = 2) -> str:
    return "–" if not math.isfinite(v) else f"{v:.{digits}f}"


def _caption(row: Row) -> str:
    bits = [row.photo[:22], f"known {_fmt(row.psnr_known, 1)} dB"]
    if math.isfinite(row.psnr_hole):
        bits.append(f"hole {_fmt(row.psnr_hole, 1)} dB")
    if math.isfinite(row.chroma_rms):
        bits.append(f"chroma {_fmt(row.chroma_rms, 1)}")
    return "  ".join(bits)


def summary(rows: list[Row]) -> list[dict]:
    """Mean figures per task."""
    out = []
    for task in dict.fromkeys(r.task for r in rows):
        rs = [r for r in rows if r.task == task]
        entry = {"task": task, "photos": len(rs)}
        for f in ("psnr_known", "ssim_known", "psnr_hole", "ssim_hole", "chroma_rms", "y_psnr", "sharpness", "seconds"):
            vals = [getattr(r, f) for r in rs if math.isfinite(getattr(r, f))]
            entry[f] = statistics.fmean(vals) if vals else float("nan")
        out.append(entry)
    return out


def markdown(model: str, configs: dict[str, InversionConfig], means: list[dict], *,
             spreads: dict[str, float] | None = None) -> str:
    """The table of mean figures per task, and under it each scribble's seed spread (when scribbles were drawn)."""
    lines = [f"# Gallery: {model}", "",
             "| task | photos | settings | PSNR known (dB) | SSIM known | PSNR hole (dB) | SSIM hole | chroma RMS "
             "| Y PSNR (dB) | sharpness | s / run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in means:
        c = configs[m["task"]]
        w = c.weights
        setting = (f"{c.latent_space}, {c.steps} steps, lr {c.lr:g}, perceptual {w.perceptual:g} ({c.perceptual}), "
                   f"latent-dist {w.latent_dist:g}, layer-spread {w.layer_spread:g}, realism {w.realism:g}"
                   + (f", tuning {c.tuning.steps} steps lr {c.tuning.lr:g}" if c.tuning.steps else "")
                   + (f", start best of {c.num_starts} (psi {c.start_psi:g})" if c.init == "best-of-k" else ""))
        lines.append(f"| {m['task']} | {m['photos']} | {setting} | {_fmt(m['psnr_known'])} | "
                     f"{_fmt(m['ssim_known'], 3)} | {_fmt(m['psnr_hole'])} | {_fmt(m['ssim_hole'], 3)} | "
                     f"{_fmt(m['chroma_rms'])} | {_fmt(m['y_psnr'], 1)} | {_fmt(m['sharpness'], 0)} | "
                     f"{_fmt(m['seconds'], 1)} |")
    if spreads:
        lines += ["", "Scribble seed spread (mean pairwise RMS between the seeds' draws, 0-255; near 0 = the same "
                  "picture at every seed): " + ", ".join(f"{k} {_fmt(v, 1)}" for k, v in spreads.items())]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.gallery", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--data", type=Path, help="folder with the held-out photos (default ../shared/data/<domain>)")
    p.add_argument("--n", type=int, default=3, help="held-out photos per task (plus the bundled example)")
    p.add_argument("--tasks", default=",".join(GALLERY_TASKS))
    p.add_argument("--seeds", default=",".join(map(str, SCRIBBLE_SEEDS)), help="scribble: the seeds to draw with")
    p.add_argument("--tag", default="", help="suffix of the output file names (comparing settings)")
    p.add_argument("--no-align", action="store_true", help="face models: centre crop instead of aligning")
    p.add_argument("--save-results", action="store_true",
                   help="also write each model-resolution result as results/<task>/<photo>.png (to study compositing; "
                        "scribbles: results/scribble/<scribble>_seed<N>.png)")
    p.add_argument("--device", default="cpu")
    return add_config_options(p)


def config_for(task: str, arch: str, a: argparse.Namespace, overrides: TaskDefaults | None = None) -> InversionConfig:
    cfg = config_from_args(a, task=task, arch=arch, overrides=overrides)
    return cfg.replace(preview_every=cfg.steps)


def scribble_sheet(model: EngineModel, cfg: InversionConfig, seeds: tuple[int, ...], path: Path,
                   title: str, *, results: Path | None = None) -> tuple[list[Row], dict[str, float]]:
    """Each example scribble drawn with each seed (each result saved as `results/<scribble>_seed<N>.png` when
    `results` is given): the rows, and each scribble's seed spread (by file name)."""
    rows, cells, captions, spreads = [], [], [], {}
    for path_in in scribble_paths(model):
        got, row_cells = run_scribble(model, read_rgb(path_in), cfg, seeds)
        if results is not None:
            results.mkdir(parents=True, exist_ok=True)
            for seed, result in zip(seeds, row_cells[2:]):
                write_png(results / f"{path_in.stem}_seed{seed}.png", result)
        got = [dataclasses.replace(r, photo=f"{path_in.name} {r.photo}") for r in got]
        rows += got
        cells.append(row_cells)
        spread = seed_spread(row_cells[2:])
        spreads[path_in.name] = spread
        captions.append(f"{path_in.stem[:24]}  spread {_fmt(spread, 1)}  strokes "
                        + " / ".join(_fmt(r.psnr_known, 1) for r in got) + " dB"
                        + "  sharpness " + " / ".join(_fmt(r.sharpness, 0) for r in got))
        log.info("scribble %s: strokes %s dB, sharpness %s, seed spread %s", path_in.name,
                 ", ".join(_fmt(r.psnr_known) for r in got), ", ".join(_fmt(r.sharpness, 0) for r in got),
                 _fmt(spread, 1))
    if not cells:
        log.warning("no example scribbles for %s", model.config.name)
        return rows, spreads
    save_sheet(path, contact_sheet(title, cells, captions,
                                   columns=("scribble", "what the loss compares") + tuple(f"seed {s}" for s in seeds)))
    return rows, spreads


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = prepare(load_model(a.model, device=a.device), device=a.device)
    arch = getattr(model.G, "arch", model.config.arch)
    tasks = [t for t in a.tasks.split(",") if t]
    bad = [t for t in tasks if t not in GALLERY_TASKS]
    if bad:
        print(f"error: unknown task(s) {bad}; expected some of {GALLERY_TASKS}", file=sys.stderr)
        return 2
    try:
        seeds = tuple(int(x) for x in a.seeds.split(",") if x.strip())
    except ValueError:
        seeds = ()
    if not seeds:
        print(f"error: --seeds must be integers separated by commas, got {a.seeds!r}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    align = not a.no_align and is_face_model(model.config.name, model.config.domain)
    photos = []
    for path in photo_paths(model, n=a.n, data=a.data) if set(tasks) & set(PHOTO_TASKS) else ():
        rgb = read_rgb(path)
        placement, note = frame_photo(rgb, model.resolution, align_face=align)
        log.info("%s: %s", path.name, note)
        photos.append((path.name, rgb, placement))
    name = f"{model.config.name}{a.tag}"
    rows: list[Row] = []
    configs = {}
    spreads: dict[str, float] = {}
    for task in tasks:
        cfg = configs[task] = config_for(task, arch, a, model.config.task_defaults)
        title = (f"{model.config.name} {task}: {cfg.latent_space}, {cfg.steps} steps, lr {cfg.lr:g}, "
                 f"perc {cfg.weights.perceptual:g} {cfg.perceptual[:4]}, dist {cfg.weights.latent_dist:g}, "
                 f"spread {cfg.weights.layer_spread:g}, real {cfg.weights.realism:g}"
                 + (f", tune {cfg.tuning.steps}" if cfg.tuning.steps else "")
                 + (f", best of {cfg.num_starts} psi {cfg.start_psi:g}" if cfg.init == "best-of-k" else ""))
        if task == "scribble":
            got, spreads = scribble_sheet(model, cfg, seeds, a.out / f"{name}_{task}.png", title,
                                          results=a.out / "results" / task if a.save_results else None)
            rows += got
            continue
        cells, captions = [], []
        for pname, rgb, placement in photos:
            row, four = run_one(model, task, rgb, placement, cfg)
            if a.save_results:
                (a.out / "results" / task).mkdir(parents=True, exist_ok=True)
                write_png(a.out / "results" / task / f"{Path(pname).stem}.png", four[2])
            row = dataclasses.replace(row, photo=pname)
            rows.append(row)
            cells.append(four)
            captions.append(_caption(row))
            log.info("%s %s: known %.2f dB, hole %s dB, chroma %s, Y %.1f dB, %.1f s", task, pname, row.psnr_known,
                     _fmt(row.psnr_hole), _fmt(row.chroma_rms), row.y_psnr, row.seconds)
        save_sheet(a.out / f"{name}_{task}.png", contact_sheet(title, cells, captions))
    means = summary(rows)
    table = markdown(model.config.name, configs, means, spreads=spreads)
    (a.out / f"{name}.md").write_text(table, encoding="utf-8")
    with (a.out / f"{name}.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([fl.name for fl in dataclasses.fields(Row)])
        for r in rows:
            writer.writerow([getattr(r, fl.name) if not isinstance(getattr(r, fl.name), float)
                             else f"{getattr(r, fl.name):.4f}" for fl in dataclasses.fields(Row)])
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
