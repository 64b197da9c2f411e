"""`python -m engine`: every task end to end on a tiny model, and one clear error line for bad input."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import models
from engine.cli import main
from tests.tiny import make_tiny_model

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    m = make_tiny_model(resolution=32)
    models.save_model(d / "tiny32", m.config, m.G, m.D)
    return d


@pytest.fixture
def env(models_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("LATENTBRUSH_MODELS", str(models_dir))
    rng = np.random.default_rng(0)
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), rng.integers(0, 255, (48, 40, 3), dtype=np.uint8))
    photo2 = tmp_path / "photo2.jpg"
    cv2.imwrite(str(photo2), rng.integers(0, 255, (40, 40, 3), dtype=np.uint8))
    mask = np.zeros((48, 40), np.uint8)
    mask[10:30, 10:30] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    strokes = np.full((64, 64, 3), 255, np.uint8)
    cv2.line(strokes, (5, 5), (50, 50), (0, 0, 255), 5)
    cv2.imwrite(str(tmp_path / "strokes.png"), strokes)
    return tmp_path


def _run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("task,extra", [
    ("reconstruct", []), ("inpaint", ["--mask", "{d}/mask.png"]), ("colorize", []), ("deblur", ["--degrade-input"]),
    ("superres", ["--factor", "2"]), ("scribble", []), ("interpolate", ["--input2", "{d}/photo2.jpg", "--frames", "4"]),
])
def test_every_task_end_to_end(env, capsys, task, extra):
    inp = "strokes.png" if task == "scribble" else "photo.png"
    out = env / f"out-{task}"
    args = [task, "--model", "tiny32", "--input", str(env / inp), "--steps", "6", "--preview-every", "2",
            "--out", str(out)] + [e.format(d=env) for e in extra]
    code, stdout, stderr = _run(args, capsys)
    assert code == 0, stderr
    result = cv2.imread(str(out / "result.png"))
    assert result is not None and result.shape == (32, 32, 3)
    if task == "interpolate":
        assert (out / "interpolation.gif").stat().st_size > 0 and (out / "interpolation.mp4").stat().st_size > 0
    else:
        for name in ("latent.pt", "progress.png", "progress.gif", "loss.png"):
            assert (out / name).stat().st_size > 0, name
        state = torch.load(out / "latent.pt", weights_only=True)
        assert state["step"] == 6


@pytest.mark.parametrize("args,message", [
    (["reconstruct", "--input", "{d}/missing.png"], "not found"),
    (["reconstruct", "--input", "{d}/notimage.png"], "not a readable image"),
    (["inpaint", "--input", "{d}/photo.png", "--mask", "{d}/smallmask.png"], "does not match"),
    (["reconstruct", "--input", "{d}/photo.png", "--steps", "0"], "steps"),
    (["reconstruct", "--input", "{d}/photo.png", "--steps", "-1"], "steps"),
    (["reconstruct", "--input", "{d}/photo.png", "--l2", "nan"], "l2"),
    (["reconstruct", "--input", "{d}/photo.png", "--perceptual", "inf"], "perceptual"),
    (["reconstruct", "--input", "{d}/photo.png", "--model", "nosuchmodel"], "unknown model"),
    (["inpaint", "--input", "{d}/photo.png"], "mask"),
])
def test_bad_inputs_give_one_clear_line(env, capsys, args, message):
    (env / "notimage.png").write_text("hello")
    cv2.imwrite(str(env / "smallmask.png"), np.zeros((10, 10), np.uint8))
    full = [a.format(d=env) for a in args] + ["--out", str(env / "o")]
    if "--model" not in full:
        full += ["--model", "tiny32"]
    code, _, stderr = _run(full, capsys)
    assert code == 2
    lines = [ln for ln in stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], stderr
    assert "Traceback" not in stderr


def test_module_entry_point_runs(env, models_dir):
    proc = subprocess.run([sys.executable, "-m", "engine", "reconstruct", "--model", "tiny32", "--input",
                           str(env / "photo.png"), "--steps", "2", "--out", str(env / "sub")], cwd=ROOT,
                          env={"LATENTBRUSH_MODELS": str(models_dir), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (env / "sub" / "result.png").is_file()


def test_fit_mask_keeps_thin_strokes_like_the_app():
    """A 1-pixel line on a 512 px mask still marks pixels at 64 px (a nearest-neighbour resize loses it)."""
    import numpy as np

    from engine.imageio import fit_mask
    m = np.zeros((512, 640), bool)
    m[200, 100:500] = True                      # 1 px high, inside the central 512 square
    small = fit_mask(m, 64)
    assert small.shape == (64, 64) and small[200 // 8].sum() >= 40 and small.sum() == small[200 // 8].sum()
    assert not fit_mask(np.zeros((100, 100), bool), 64).any() and fit_mask(np.ones((30, 30), bool), 64).all()


def test_scribble_keeps_stroke_colours_like_the_app(env, capsys):
    """A 128 px scribble shrunk to the 32 px model: every stroke pixel keeps the drawn colour (shrinking the picture
    itself blends each stroke's edge with the white canvas), and strokes and colours equal the app's."""
    from app.render import shrink_strokes
    from engine.tasks import strokes_from_image

    drawn = ((90, 100, 110), (200, 60, 30))
    big = np.full((128, 160, 3), 255, np.uint8)   # wider than high: the centred square is used
    cv2.line(big, (30, 20), (130, 100), drawn[0], 9, cv2.LINE_8)
    cv2.circle(big, (80, 90), 11, drawn[1], -1, cv2.LINE_8)
    cv2.imwrite(str(env / "big.png"), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    code, _, stderr = _run(["scribble", "--model", "tiny32", "--input", str(env / "big.png"), "--steps", "2",
                            "--out", str(env / "sc")], capsys)
    assert code == 0, stderr
    target = cv2.cvtColor(cv2.imread(str(env / "sc" / "target.png")), cv2.COLOR_BGR2RGB).astype(int)
    stroke = (target != 255).any(axis=-1)
    assert stroke.sum() > 60
    # each stroke pixel is one drawn colour, or (where the two strokes meet) a mix of the two, never canvas white
    lo, hi = np.minimum(*drawn), np.maximum(*drawn)
    assert ((target[stroke] >= lo - 1) & (target[stroke] <= hi + 1)).all()
    square = np.ascontiguousarray(big[:, 16:144])
    colours, mask = shrink_strokes(square, strokes_from_image(square), 32)
    assert (mask == stroke).all() and np.abs(colours.astype(int) - target).max() <= 1


def test_scribble_with_no_strokes_in_the_frame_says_so(env, capsys):
    blank = np.full((40, 120, 3), 255, np.uint8)
    blank[:, :5] = 0                               # only outside the centred square
    cv2.imwrite(str(env / "blank.png"), blank)
    code, _, stderr = _run(["scribble", "--model", "tiny32", "--input", str(env / "blank.png"), "--steps", "2",
                            "--out", str(env / "sb")], capsys)
    assert code == 2 and "no strokes" in stderr and "Traceback" not in stderr
