"""Live quality figures: every Frame carries PSNR/SSIM of what the loss compares (known pixels, after the
operator), the masked metrics count only the pixels they are told to, and the no-reference sharpness ranks a
blurred draw below a sharp one."""
import math

import cv2
import numpy as np
import pytest

from engine import InversionConfig, LossWeights, project_target, request_for_task, run
from engine.metrics import psnr, seed_spread, sharpness, ssim
from tests.engine_helpers import recoverable_model, target_from_latent


@pytest.fixture(scope="module")
def model():
    return recoverable_model()


def test_masked_metrics_ignore_unmasked_pixels():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    b = a.copy()
    b[:, 20:] = 255 - b[:, 20:]
    mask = np.zeros((32, 32), bool)
    mask[:, :10] = True
    assert psnr(a, b, mask) == psnr(a[:, :10], b[:, :10]) and psnr(a, b, mask) > 90
    assert ssim(a, b, mask) == pytest.approx(1.0) and ssim(a, b) < 0.8
    assert math.isnan(psnr(a, b, np.zeros((32, 32), bool)))


def test_sharpness_falls_with_blur_and_is_zero_on_a_flat_image():
    yy, xx = np.mgrid[:64, :64]
    # edges at several scales, so that each wider blur removes more of them
    grey = 127 + 60 * np.sign(np.sin(xx / 3.0)) * np.sign(np.sin(yy / 5.0)) + 40 * np.sin(xx * yy / 90.0)
    img = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    scores = [sharpness(img)] + [sharpness(cv2.blur(img, (k, k))) for k in (3, 5, 9)]
    assert scores == sorted(scores, reverse=True) and scores[-1] < scores[0] / 4
    assert sharpness(np.full((64, 64, 3), 90, np.uint8)) == 0.0
    # read as RGB, the repo's colour order: red edges weigh more in the grey level than blue ones (0.299 / 0.114)
    red, blue = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.uint8)
    red[:, ::2, 0] = 255
    blue[:, ::2, 2] = 255
    assert sharpness(red) > 2 * sharpness(blue) > 0


def test_seed_spread_is_the_mean_pairwise_rms_and_zero_for_one_picture_drawn_again():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 246, (64, 64, 3), dtype=np.uint8)
    assert seed_spread([face, face.copy(), face.copy()]) == 0.0         # the same draw at every seed
    # pairs differ by 0, 10 and 10 everywhere: mean RMS 20/3
    assert seed_spread([face, face + 10, face]) == pytest.approx(20 / 3)
    varied = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(4)]
    assert seed_spread(varied) > 60                                     # independent noise: about 104
    assert math.isnan(seed_spread([face]))
    with pytest.raises(ValueError, match="one shape"):
        seed_spread([face, face[:32]])


@pytest.mark.parametrize("task", ["inpaint", "colorize", "superres"])
def test_frames_carry_psnr_and_ssim_of_what_the_loss_compares(model, task):
    target, _ = target_from_latent(model)
    painted = None
    if task == "inpaint":
        painted = np.zeros((32, 32), bool)
        painted[8:20, 8:20] = True
    cfg = InversionConfig(latent_space="w+", steps=60, lr=0.1, preview_every=20,
                          weights=LossWeights(l2=1.0, perceptual=0.0))
    req = request_for_task(task, target, painted=painted, config=cfg, factor=2)
    frames = list(run(model, req))
    projected = project_target(req)
    known = req.known if req.known is not None else np.ones((32, 32), bool)
    for f in frames:
        assert f.psnr == pytest.approx(psnr(f.degraded, projected, known))
        assert f.ssim == pytest.approx(ssim(f.degraded, projected, known))
    assert frames[-1].psnr > frames[0].psnr and frames[-1].ssim > frames[0].ssim
