"""The offline example files in assets/examples/ and `app.examples.examples_for`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app import examples
from app.examples import TABS, examples_for, model_for_example
from app.uploads import check_mask_coverage, load_image, load_mask
from engine.tasks import strokes_from_image

INPUTS_PER_ROW = {"scribble": 1, "inpaint": 2, "reconstruct": 1, "colorize": 1, "deblur": 1, "superres": 1,
                  "interpolate": 2}


def _decode(path: str) -> np.ndarray:
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


@pytest.mark.parametrize("tab", TABS)
def test_every_example_exists_and_decodes(tab):
    rows = examples_for(tab)
    assert rows, f"no examples for {tab}"
    for row in rows:
        assert len(row) == INPUTS_PER_ROW[tab]
        for path in row:
            p = Path(path)
            assert p.is_file() and p.resolve().is_relative_to(examples.EXAMPLES_DIR.resolve())
            assert p.suffix == ".png"
            img = _decode(path)
            assert img.dtype == np.uint8 and min(img.shape[:2]) >= 16
            # and the app's own upload path accepts it
            assert load_image(path).rgb.shape[:2] == img.shape[:2]


def test_scribbles_are_colour_strokes_on_white():
    rows = examples_for("scribble")
    assert len(rows) >= 3
    for (path,) in rows:
        for size in examples.SCRIBBLE_SIZES:
            p = Path(path.replace("_256.png", f"_{size}.png"))
            rgb = load_image(p).rgb
            assert rgb.shape == (size, size, 3)
            strokes = strokes_from_image(rgb)
            assert 0.03 < strokes.mean() < 0.6, (p.name, strokes.mean())
            assert (rgb[~strokes] >= 245).all()  # the background is white
            colours = {tuple(c) for c in rgb[strokes].reshape(-1, 3)[::7] // 32}
            assert len(colours) >= 3, p.name  # several colours, not one grey blob
            assert rgb[strokes].std(axis=1).mean() > 10  # coloured, not grey


def test_inpaint_masks_are_binary_partial_and_match_their_image():
    for image_path, mask_path in examples_for("inpaint"):
        mask = _decode(mask_path)
        assert mask.ndim == 2, mask_path
        assert set(np.unique(mask)) <= {0, 255}, mask_path
        image = load_image(image_path).rgb
        assert mask.shape == image.shape[:2]
        painted = load_mask(mask_path, size=image.shape[:2])
        np.testing.assert_array_equal(painted, mask == 255)
        assert 0.02 < painted.mean() < 0.5, (mask_path, painted.mean())
        check_mask_coverage(painted, what="fill in")  # neither empty nor (almost) everything


def test_degraded_examples_are_degraded():
    for (path,) in examples_for("colorize"):
        rgb = load_image(path).rgb
        assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    for (path,) in examples_for("superres"):
        assert load_image(path).rgb.shape == (examples.LOWRES, examples.LOWRES, 3)
    for (path,) in examples_for("deblur"):
        blurred = load_image(path).rgb.astype(float)
        sharp = load_image(path.replace("_blur.png", ".png")).rgb.astype(float)
        assert blurred.shape == sharp.shape
        # photos lose most of their detail; model samples (smooth early in training) at least some
        ratio = 0.6 if Path(path).parent == examples.EXAMPLES_DIR else 0.95
        assert np.abs(np.diff(blurred, axis=1)).mean() < ratio * np.abs(np.diff(sharp, axis=1)).mean(), path


def test_model_samples_exist_for_each_bundled_model():
    import models

    for name in models.bundled_names():
        for seed in examples.SAMPLE_SEEDS:
            p = examples.SAMPLES_DIR / f"{name}_{seed:02d}.png"
            assert p.is_file(), f"{p} missing: run `python -m app.examples --make`"
            assert _decode(str(p)).shape == (64, 64, 3)  # the bundled models are 64 px


def test_missing_files_are_left_out(tmp_path, monkeypatch):
    monkeypatch.setattr(examples, "EXAMPLES_DIR", tmp_path)
    monkeypatch.setattr(examples, "SAMPLES_DIR", tmp_path / "samples")
    for tab in TABS:
        assert examples_for(tab) == []
    Image.fromarray(np.full((64, 64, 3), 255, np.uint8)).save(tmp_path / "scribble_cat_grey_256.png")
    assert examples_for("scribble") == [[str(tmp_path / "scribble_cat_grey_256.png")]]
    # a row is dropped when any of its files is missing
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(tmp_path / "astronaut_face.png")
    assert examples_for("inpaint") == []


def test_unknown_tab_is_refused():
    with pytest.raises(ValueError, match="unknown tab"):
        examples_for("paint-by-numbers")


def test_model_for_example():
    assert model_for_example(examples.EXAMPLES_DIR / "astronaut_face.png") == "face64"
    assert model_for_example(examples.EXAMPLES_DIR / "chelsea_face_gray.png") == "cat64"
    assert model_for_example(examples.EXAMPLES_DIR / "scribble_cat_grey_256.png") == "cat64"
    assert model_for_example(examples.SAMPLES_DIR / "face64_02_blur.png") == "face64"
    assert model_for_example("elsewhere.png") is None


def test_scribble_drawing_is_deterministic():
    for name in examples.SCRIBBLES:
        for size in examples.SCRIBBLE_SIZES:
            drawn = examples.scribble(name, size)
            np.testing.assert_array_equal(drawn, load_image(examples.EXAMPLES_DIR / f"scribble_{name}_{size}.png").rgb)


@pytest.mark.parametrize("size", examples.SCRIBBLE_SIZES)
def test_grumpy_scribble_draws_the_dark_eye_patches(size):
    # A Grumpy Cat is told from the grumpy data's plain grey cats by the dark patches around its eyes; a drawing that
    # leaves the eye band blank drew grey cats at 7 of 18 seeds.
    img = examples.scribble("grumpy", size).astype(int)
    yy, xx = np.mgrid[:size, :size] / size
    for cx in (0.31, 0.69):
        r = np.hypot(xx - cx, yy - 0.47)
        ring = (r > 0.07) & (r < 0.10)
        dark = img[ring].max(axis=1) < 120
        assert dark.mean() > 0.6, f"eye at x={cx}: {dark.mean():.2f} of its surround is dark"
    blaze = img[round(0.40 * size):round(0.55 * size), round(0.48 * size):round(0.52 * size)]
    assert strokes_from_image(blaze.astype(np.uint8)).all() and blaze.min() > 200


def test_write_samples_refreshes_only_the_named_models(tmp_path, monkeypatch):
    monkeypatch.setattr(examples, "ROOT", tmp_path)
    monkeypatch.setattr(examples, "SAMPLES_DIR", tmp_path)
    examples.write_samples(["grumpycat64"])
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted([f"grumpycat64_{s:02d}.png" for s in examples.SAMPLE_SEEDS]
                             + [f"grumpycat64_{examples.DEGRADED_SAMPLE:02d}_{k}.png" for k in ("gray", "blur", "lowres")])
    # the samples are the model's own (seed 0, truncation 0.7), not a placeholder
    assert np.array_equal(np.asarray(Image.open(tmp_path / "grumpycat64_00.png").convert("RGB")),
                          examples.model_samples("grumpycat64")[0])


def test_an_unknown_model_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(examples, "EXAMPLES_DIR", tmp_path)
    monkeypatch.setattr(examples, "SAMPLES_DIR", tmp_path / "samples")
    with pytest.raises(ValueError, match="not bundled: dog64"):
        examples.write_samples(["cat64", "dog64"])
    with pytest.raises(SystemExit) as exit_info:
        examples.main(["--make", "--models", "dog64"])
    assert exit_info.value.code == 2 and "not bundled: dog64" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        examples.main(["--models", "cat64"])  # --models without --make
