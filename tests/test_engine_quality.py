"""Live quality figures: every Frame carries PSNR/SSIM of what the loss compares (known pixels, after the
operator), and the masked metrics count only the pixels they are told to."""
import math

import numpy as np
import pytest

from engine import InversionConfig, LossWeights, project_target, request_for_task, run
from engine.metrics import psnr, ssim
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
