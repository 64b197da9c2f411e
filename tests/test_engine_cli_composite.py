"""`python -m engine` writes composite.png at the input photo's own resolution (and quality.csv per frame)."""
import csv

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.photo import luma


@pytest.fixture
def env(tiny_models_dir, tmp_path):
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    photo = cv2.resize(small, (140, 90), interpolation=cv2.INTER_CUBIC)  # BGR on disk, smooth
    cv2.imwrite(str(tmp_path / "photo.png"), photo)
    grey = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    mask = np.zeros((90, 140), np.uint8)
    mask[30:50, 60:80] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    return tmp_path


def _run(env, capsys, *args):
    code = main([*args, "--model", "tiny32", "--steps", "6", "--preview-every", "2"])
    assert code == 0, capsys.readouterr().err


def test_inpaint_composite_is_the_photo_outside_the_painted_region(env, capsys):
    out = env / "inpaint"
    _run(env, capsys, "inpaint", "--input", str(env / "photo.png"), "--mask", str(env / "mask.png"),
         "--out", str(out), "--crop", "40,0,90")
    photo = cv2.imread(str(env / "photo.png"))
    comp = cv2.imread(str(out / "composite.png"))
    assert comp.shape == photo.shape == (90, 140, 3)
    assert cv2.imread(str(out / "result.png")).shape == (32, 32, 3)
    far = np.ones((90, 140), bool)
    far[20:60, 50:90] = False                  # the hole plus its feather
    np.testing.assert_array_equal(comp[far], photo[far])
    assert not np.array_equal(comp[35:45, 65:75], photo[35:45, 65:75])  # the hole was filled from the result
    rows = list(csv.DictReader((out / "quality.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(float(r["psnr_db"]) > 0 and -1 <= float(r["ssim"]) <= 1 for r in rows)


def test_colorize_composite_keeps_the_photo_luminance(env, capsys):
    out = env / "colorize"
    _run(env, capsys, "colorize", "--input", str(env / "grey.png"), "--out", str(out))
    grey = cv2.cvtColor(cv2.imread(str(env / "grey.png")), cv2.COLOR_BGR2RGB)
    comp = cv2.cvtColor(cv2.imread(str(out / "composite.png")), cv2.COLOR_BGR2RGB)
    assert comp.shape == grey.shape
    mse = float(((luma(comp) - luma(grey)) ** 2).mean())
    assert 10 * np.log10(255 ** 2 / max(mse, 1e-10)) >= 40


def test_reconstruct_and_superres_composites(env, capsys):
    _run(env, capsys, "reconstruct", "--input", str(env / "photo.png"), "--out", str(env / "rec"))
    assert cv2.imread(str(env / "rec" / "composite.png")).shape == (90, 140, 3)
    tiny = cv2.resize(cv2.imread(str(env / "photo.png")), (28, 18), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(env / "tiny.png"), tiny)
    _run(env, capsys, "superres", "--input", str(env / "tiny.png"), "--factor", "2", "--out", str(env / "sr"))
    # an 18 px tall photo framed at 32 px: the composite is enlarged (2x) so the result keeps its pixels
    assert cv2.imread(str(env / "sr" / "composite.png")).shape == (36, 56, 3)


def test_bad_crop_is_one_clear_error(env, capsys):
    code = main(["reconstruct", "--model", "tiny32", "--input", str(env / "photo.png"), "--out", str(env / "x"),
                 "--crop", "1,2"])
    err = capsys.readouterr().err
    assert code == 2 and "--crop" in err
