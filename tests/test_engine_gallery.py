"""`python -m engine.gallery` on a tiny model: a contact sheet per task and a table with the figures."""
import csv
import math

import cv2
import pytest

import models
from engine.gallery import COLUMNS, PHOTO_TASKS, main
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
    assert [r["task"] for r in rows] == list(PHOTO_TASKS)          # one bundled photo per task
    by_task = {r["task"]: r for r in rows}
    assert all(math.isfinite(float(r["psnr_known"])) and float(r["seconds"]) > 0 for r in rows)
    assert math.isfinite(float(by_task["inpaint"]["psnr_hole"])) and math.isnan(float(by_task["deblur"]["psnr_hole"]))
    assert math.isfinite(float(by_task["colorize"]["chroma_rms"]))
    assert float(by_task["colorize"]["y_psnr"]) >= 40               # colorize keeps the photo's luminance
    table = (out / "tiny32.md").read_text()
    assert table.count("\n| ") == 1 + len(PHOTO_TASKS) and "4 steps" in table


def test_gallery_rejects_unknown_tasks(models_dir, tmp_path, capsys):
    assert main(["--model", "tiny32", "--out", str(tmp_path / "g"), "--tasks", "sketch"]) == 2
    assert "unknown task" in capsys.readouterr().err
