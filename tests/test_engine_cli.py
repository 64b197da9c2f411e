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
