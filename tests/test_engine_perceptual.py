"""The 'mobilenet' perceptual network (engine/perceptual.py): sizes, input mapping, distance, runs, broken asset."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models.mobilenet as mobilenet
from engine import EngineError, InversionConfig, InversionRequest, LossWeights, run
from engine.perceptual import _mobilenet, build_extractor, feature_distance
from tests.engine_helpers import recoverable_model, target_from_latent

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def extractor():
    ext, kind, messages = build_extractor("mobilenet", D=None, device=CPU)
    assert kind == "mobilenet" and messages == ()
    return ext


@pytest.mark.parametrize("size,widths", [(32, [32, 16, 8, 4, 2]), (100, [50, 25, 13, 7, 4]),
                                         (512, [128, 64, 32, 16, 8])])
def test_inputs_are_resized_into_64_to_256_px(extractor, size, widths):
    with torch.no_grad():
        feats = extractor(torch.zeros(1, 3, size, size))
    assert [f.shape[-1] for f in feats] == widths
    assert [f.shape[1] for f in feats] == [16, 24, 32, 96, 320]


def test_engine_range_maps_to_the_tflite_input_range(extractor):
    # The shipped file expects (pixel - 128) / 128: engine -1 is pixel 0, engine +1 is pixel 255.
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    pixel = (x + 1) * 127.5
    with torch.no_grad():
        ours = extractor(x)
        direct = extractor.net.features((pixel - 128) / 128)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-4) for a, b in zip(ours, direct))


def test_distance_is_zero_for_equal_images_and_grows_with_the_change(extractor):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    noise = torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        fx = extractor(x)
        d = [feature_distance(fx, extractor((x + s * noise).clamp(-1, 1))) for s in (0.0, 0.05, 0.3)]
    assert d[0].abs().max() < 1e-6
    assert torch.all(d[1] > 0) and torch.all(d[2] > d[1])


def test_a_run_with_mobilenet_reports_and_lowers_its_perceptual_loss():
    model = recoverable_model()
    target, _ = target_from_latent(model)
    cfg = InversionConfig(latent_space="w+", steps=40, lr=0.1, preview_every=1, perceptual="mobilenet",
                          weights=LossWeights(l2=0.0, perceptual=1.0))
    frames = list(run(model, InversionRequest(target=target, config=cfg)))
    first, last = frames[0].losses["perceptual"], frames[-1].losses["perceptual"]
    assert not frames[-1].messages and np.isfinite(last)
    assert last < 0.7 * first


def test_a_broken_shipped_asset_is_an_engine_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mobilenet, "DEFAULT_PATH", tmp_path / "missing.safetensors")
    _mobilenet.cache_clear()
    try:
        with pytest.raises(EngineError, match="mobilenet"):
            build_extractor("mobilenet", D=None, device=CPU)
    finally:
        _mobilenet.cache_clear()


def test_evaluate_takes_a_perceptual_network_and_an_inpaint_task(tmp_path, monkeypatch, capsys):
    import cv2

    from engine.evaluate import main as evaluate_main
    from tests.tiny import install_tiny_model
    install_tiny_model(tmp_path, monkeypatch)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        cv2.imwrite(str(imgs / f"{i}.png"), np.full((40, 40, 3), 60 + 60 * i, np.uint8))
    mask = np.zeros((64, 64), np.uint8)
    mask[16:40, 16:40] = 255
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    assert evaluate_main(["tiny32", "--images", str(imgs), "--steps", "3", "--perceptual", "mobilenet", "--task",
                          "inpaint", "--mask", str(tmp_path / "mask.png"), "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "2 held-out images, inpaint, perceptual mobilenet" in out
    sheet = cv2.imread(str(tmp_path / "rep" / "inpaint.png"))
    assert sheet.shape == (64, 96, 3)  # rows of (masked input | result | original), 32 px each
    assert (sheet[8:20, 8:20] == 128).all()  # the hole is shown grey in the input column


def test_deblur_defaults_to_mobilenet_and_the_app_shows_it():
    from app.controls import control_defaults
    from engine.tasks import default_config
    assert default_config("deblur").perceptual == "mobilenet"
    assert default_config("inpaint").perceptual == "discriminator"
    assert control_defaults("deblur").perceptual_net == "mobilenet"
    assert control_defaults("reconstruct").perceptual_net == "discriminator"
