"""Blind sample counts: shuffled, unlabelled grids of samples and real photos for raters, and the tally of their marks.

CLI:
- `python -m models.blind_grids make MODEL [MODEL ...] --real DIR --grids K --out DIR [--seed S]`: K grids of
  8x8 cells (each 64 px, enlarged 2x by pixel repetition to 1024 px), `grid_A.png ...`; every grid holds the
  sources (each model's psi-1 samples with constant noise, then one share of DIR's training photos, the held-out
  names excluded by the trainer's hash) in equal shares, at shuffled places. It writes `STANDARD.txt` (what a
  rater is shown with the grids) beside them and `key.json` (which source each cell is) one level up, so a rater
  given the grid folder cannot read it.
- `python -m models.blind_grids tally KEY.json RATINGS.json`: RATINGS is `{rater: {grid: [broken cells]}}` (cells
  0..63 row by row); prints each source's broken share over every rating, with its standard error.

Why: counting broken faces by eye while knowing which checkpoint is which was found biased (models/TRAINING.md,
"Blind counts"), and a grid of the training photos themselves holds cells the same standard calls broken, so
samples are only judged beside photos, by raters who cannot tell which is which.
"""
from __future__ import annotations

import argparse
import json
import math
import string
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from .dataset import load_square, split_files
from .evaluate_samples import generate_uint8
from .loader import load_model

CELLS = 64  # an 8x8 grid
REAL = "real"
STANDARD = """Each image is an 8x8 grid of 64 small face images (each 64 px, shown enlarged to 128 px). Cells are
numbered 0..63 row by row: row r (0 = top), column c (0 = left) is cell 8*r + c.
For each grid, list the BROKEN cells by this standard:
- BROKEN: the face is split or doubled (two overlapping faces, a face cut in halves that do not match); smeared to
  mush (no readable eyes/nose/mouth); eyes or mouth grossly malformed (one eye missing, melted, grey blocks where
  eyes should be, a mouth that is a smear across the face); or so out of focus that no facial detail is left.
- NOT broken: low resolution in general, unusual pose or tilt, age, glasses, hats, hands, lighting,
  black-and-white, makeup, expression, background clutter, mild softness.
- BORDERLINE: soft or odd but still acceptable as a face photo; list these separately.
"""


def shares(num_sources: int, grids: int) -> list[list[int]]:
    """How many cells of each grid each source gets: equal shares, the remainder rotated so totals stay even."""
    base, extra = divmod(CELLS, num_sources)
    return [[base + ((s - g) % num_sources < extra) for s in range(num_sources)] for g in range(grids)]


def key_path(out: str | Path) -> Path:
    """Where `make_grids` writes the key of the grids in `out`: beside that folder, out of a rater's reach."""
    out = Path(out)
    return out.parent / f"{out.name}_key.json"


def make_grids(models: list[str], real_dir: str | Path, *, grids: int, out: str | Path, seed: int = 0,
               holdout_fraction: float = 0.02) -> dict:
    """Write the grids, STANDARD.txt and the key (see the module docstring) -> the key
    {grid letter: [[source, id], ...] in cell order}; a model's id is its sample index, a photo's its file name."""
    if not 1 <= grids <= 26:
        raise ValueError("grids must be 1..26")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan = shares(len(models) + 1, grids)
    need = [sum(p[s] for p in plan) for s in range(len(models) + 1)]
    rng = np.random.default_rng(seed)
    pools: list[tuple[str, list]] = []
    for s, name in enumerate(models):
        G = load_model(name).G.float()
        imgs = generate_uint8(G, need[s], seed=seed * 1000 + s, noise_mode="const")
        if imgs.shape[1:] != (64, 64, 3):
            raise ValueError(f"{name}: the grids are for 64 px models, got {imgs.shape[1]} px")
        pools.append((str(name), [(i, imgs[i]) for i in range(need[s])]))
    train, _ = split_files(real_dir, holdout_fraction=holdout_fraction)
    if len(train) < need[-1]:
        raise ValueError(f"{real_dir}: {need[-1]} photos needed, {len(train)} found")
    picked = rng.choice(len(train), need[-1], replace=False)
    pools.append((REAL, [(train[j].name, load_square(train[j], 64)) for j in picked]))
    key, taken = {}, [0] * len(pools)
    for g in range(grids):
        cells = []
        for s, (source, pool) in enumerate(pools):
            cells += [(source, *pool[taken[s] + k]) for k in range(plan[g][s])]
            taken[s] += plan[g][s]
        cells = [cells[j] for j in rng.permutation(CELLS)]
        rows = [np.concatenate([c[2] for c in cells[r * 8:(r + 1) * 8]], axis=1) for r in range(8)]
        grid = np.concatenate(rows, axis=0).repeat(2, axis=0).repeat(2, axis=1)
        letter = string.ascii_uppercase[g]
        Image.fromarray(grid).save(out / f"grid_{letter}.png")
        key[letter] = [[c[0], c[1] if isinstance(c[1], str) else int(c[1])] for c in cells]
    (out / "STANDARD.txt").write_text(STANDARD)
    key_path(out).write_text(json.dumps(key, indent=1))
    return key


def tally(key: dict, ratings: dict) -> dict[str, dict]:
    """{source: {"broken", "cells", "share", "stderr"}} over every (rater, grid) rating; a cell rated twice counts
    twice. Raises on a grid the key lacks or a cell outside 0..63."""
    counts: dict[str, list[int]] = {}
    for rater, grids in ratings.items():
        for grid, broken in grids.items():
            if grid not in key:
                raise ValueError(f"rater {rater!r}: grid {grid!r} is not in the key")
            if any(not 0 <= int(c) < len(key[grid]) for c in broken):
                raise ValueError(f"rater {rater!r}, grid {grid!r}: cells must be 0..{len(key[grid]) - 1}")
            marked = {int(c) for c in broken}
            for i, (source, _) in enumerate(key[grid]):
                b, n = counts.setdefault(source, [0, 0])
                counts[source] = [b + (i in marked), n + 1]
    result = {}
    for source, (b, n) in counts.items():
        p = b / n
        result[source] = {"broken": b, "cells": n, "share": p, "stderr": math.sqrt(p * (1 - p) / n)}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.blind_grids", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make", help="write shuffled grids of samples and photos, and their key")
    m.add_argument("models", nargs="+", help="bundled names or checkpoint paths (64 px)")
    m.add_argument("--real", required=True, help="the training photo folder (held-out names are left out)")
    m.add_argument("--grids", type=int, default=8)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--out", required=True)
    t = sub.add_parser("tally", help="broken share per source from raters' marks")
    t.add_argument("key")
    t.add_argument("ratings")
    a = p.parse_args(argv)
    if a.cmd == "make":
        try:
            key = make_grids(a.models, a.real, grids=a.grids, out=a.out, seed=a.seed)
        except (ValueError, FileNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{len(key)} grids in {a.out}, rater's standard in {Path(a.out) / 'STANDARD.txt'}; key (keep it from "
              f"raters): {key_path(a.out)}")
        return 0
    try:
        result = tally(json.loads(Path(a.key).read_text()), json.loads(Path(a.ratings).read_text()))
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for source, r in result.items():
        print(f"{source}: {r['broken']} broken of {r['cells']} rated cells, {100 * r['share']:.1f}% "
              f"± {100 * r['stderr']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
