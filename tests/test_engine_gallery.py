"""`python -m engine.gallery` on a tiny model: a contact sheet per task and a table with the figures."""
import csv
import math

import cv2
import numpy as np
import pytest
from PIL import Image

import models
from engine.gallery import COLUMNS, PHOTO_TASKS, SCRIBBLE_SEEDS, flat_colours, main, save_sheet
from engine.metrics import seed_spread
from tests.tiny import make_tiny_model


@pytest.fixture
def models_dir(tmp_path, monkeypatch):
    d = tmp_path / "models"
    m = make_tiny_model(resolution=32)
    models.save_model(d / "tiny32", m.config, m.G, m.D)
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(d))
    return d


def test_gallery_writes_a_sheet_per_task_and_a_table(models_dir, tmp_path):
    out = tmp_path / "gallery"
    assert main(["--model", "tiny32", "--out", str(out), "--steps", "4", "--n", "0"]) == 0
    for task in PHOTO_TASKS:
        sheet = cv2.imread(str(out / f"tiny32_{task}.png"))
        assert sheet is not None and sheet.shape[1] > 128 * len(COLUMNS) and sheet.shape[0] > 128, task
    rows = list(csv.DictReader((out / "tiny32.csv").open()))
    n_scribbles = 2 * len(SCRIBBLE_SEEDS)                           # the two cat scribbles, each seed
    assert [r["task"] for r in rows] == list(PHOTO_TASKS) + ["scribble"] * n_scribbles  # one photo per task
    rows = rows[:len(PHOTO_TASKS)]
    by_task = {r["task"]: r for r in rows}
    assert all(math.isfinite(float(r["psnr_known"])) and float(r["seconds"]) > 0 for r in rows)
    assert math.isfinite(float(by_task["inpaint"]["psnr_hole"])) and math.isnan(float(by_task["deblur"]["psnr_hole"]))
    assert math.isfinite(float(by_task["colorize"]["chroma_rms"]))
    assert float(by_task["colorize"]["y_psnr"]) >= 40               # colorize keeps the photo's luminance
    assert all(float(r["sharpness"]) > 0 for r in rows)             # a random tiny G draws no flat frame
    table = (out / "tiny32.md").read_text()
    assert table.count("\n| ") == 2 + len(PHOTO_TASKS) and "4 steps" in table and f"| scribble | {n_scribbles} |" in table
    assert "| sharpness |" in table


def test_gallery_rejects_unknown_tasks(models_dir, tmp_path, capsys):
    assert main(["--model", "tiny32", "--out", str(tmp_path / "g"), "--tasks", "sketch"]) == 2
    assert "unknown task" in capsys.readouterr().err


def test_gallery_draws_the_domains_example_scribbles_with_each_seed(models_dir, tmp_path, capsys):
    out = tmp_path / "gallery"
    assert main(["--model", "tiny32", "--out", str(out), "--steps", "3", "--tasks", "scribble", "--seeds", "4,5",
                 "--save-results"]) == 0
    rows = list(csv.DictReader((out / "tiny32.csv").open()))
    assert [r["photo"] for r in rows] == ["scribble_cat_grey_256.png seed 4", "scribble_cat_grey_256.png seed 5",
                                          "scribble_cat_orange_256.png seed 4", "scribble_cat_orange_256.png seed 5"]
    assert all(math.isfinite(float(r["psnr_known"])) and math.isnan(float(r["psnr_hole"])) for r in rows)
    assert rows[0]["psnr_known"] != rows[1]["psnr_known"]           # the seed changes the drawing
    assert all(float(r["sharpness"]) > 0 for r in rows) and rows[0]["sharpness"] != rows[1]["sharpness"]
    spread_line = (out / "tiny32.md").read_text().splitlines()[-1]     # each scribble's seed spread under the table
    spreads = dict(part.rsplit(" ", 1) for part in spread_line.split(": ", 1)[1].split(", "))
    assert sorted(spreads) == ["scribble_cat_grey_256.png", "scribble_cat_orange_256.png"]
    assert all(float(v) > 0 for v in spreads.values())                  # two seeds, two different draws
    saved = sorted(p.name for p in (out / "results" / "scribble").iterdir())
    assert saved == [f"scribble_cat_{c}_256_seed{s}.png" for c in ("grey", "orange") for s in (4, 5)]
    draws = [np.asarray(Image.open(out / "results" / "scribble" / n).convert("RGB")) for n in saved[:2]]
    assert draws[0].shape == (32, 32, 3) and float(spreads["scribble_cat_grey_256.png"]) == pytest.approx(
        seed_spread(draws), abs=0.05)                                   # the spread is of the saved results
    sheet = cv2.imread(str(out / "tiny32_scribble.png"))              # scribble, loss view, a result per seed
    assert sheet is not None and 128 * 4 < sheet.shape[1] < 128 * 5 and sheet.shape[0] > 2 * 128
    assert main(["--model", "tiny32", "--out", str(out), "--tasks", "scribble", "--seeds", "a"]) == 2
    assert "--seeds" in capsys.readouterr().err


def test_sheets_keep_the_drawn_colours_exact(tmp_path):
    # A small drawing beside a wide, many-coloured photo strip: median cut alone read the blue back as 184, not 205.
    rng = np.random.default_rng(0)
    h, w = 184, 2644
    y, x = np.mgrid[:h, :w] / np.array([h, w])[:, None, None]
    photo = np.stack([200 * x + 40 * np.sin(20 * y), 120 + 60 * np.sin(9 * x + 3 * y), 110 + 80 * np.cos(7 * x)], -1)
    sheet = (photo + rng.normal(0, 25, (h, w, 3))).clip(0, 255).astype(np.uint8)
    sheet[:, :140] = 255
    sheet[40:60, 40:60] = (120, 170, 205)
    sheet[80:100, 40:60] = (70, 50, 40)
    with Image.open(save_sheet(tmp_path / "s.png", sheet)) as im:
        assert im.mode == "P" and len(im.getpalette()) // 3 <= 256
        back = np.asarray(im.convert("RGB"))
    assert (back[40:60, 40:60] == (120, 170, 205)).all() and (back[80:100, 40:60] == (70, 50, 40)).all()
    assert np.abs(back[:, 140:].astype(int) - sheet[:, 140:]).mean() < 12      # the photo part is still dithered close


def test_flat_colours_are_the_large_exact_ones():
    img = np.zeros((10, 20, 3), np.uint8)
    img[:, :10] = (1, 2, 3)
    img[:5, 10:] = (250, 0, 7)
    img[5:, 10:] = np.arange(50 * 3, dtype=np.uint8).reshape(5, 10, 3)      # fifty colours of one pixel each
    got = flat_colours(img, min_pixels=10)
    assert got.tolist() == [[1, 2, 3], [250, 0, 7]] and got.dtype == np.uint8
