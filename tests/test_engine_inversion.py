"""The inversion loop: recovery, masking, determinism, cancellation, options."""
import dataclasses
import logging

import numpy as np
import pytest
import torch

from engine import (EngineError, InversionConfig, InversionRequest, LossWeights, OperatorSpec, prepare,
                    request_for_task, run)
from tests.engine_helpers import psnr, recoverable_model, target_from_latent
from tests.tiny import make_tiny_model


@pytest.fixture(scope="module")
def model():
    return recoverable_model()


def _final(frames):
    frames = list(frames)
    assert frames[-1].done and all(not f.done for f in frames[:-1])
    return frames


def test_recovers_known_latent_in_w_plus(model):
    target, _ = target_from_latent(model)
    cfg = InversionConfig(latent_space="w+", steps=300, lr=0.1, preview_every=100,
                          weights=LossWeights(l2=1.0, perceptual=0.0))
    frames = _final(run(model, InversionRequest(target=target, config=cfg)))
    assert psnr(frames[-1].image, target) >= 30.0
    assert frames[-1].latent.shape == (model.G.num_ws, model.G.w_dim)


def test_frames_stream_every_k_steps_with_losses(model):
    target, _ = target_from_latent(model)
    cfg = InversionConfig(steps=25, preview_every=10, weights=LossWeights(l1=0.5, l2=1.0, perceptual=0.2,
                                                                          latent_dist=0.01, realism=0.01))
    frames = _final(run(model, InversionRequest(target=target, config=cfg)))
    assert [f.step for f in frames] == [10, 20, 25]
    assert set(frames[-1].losses) == {"l1", "l2", "perceptual", "latent_dist", "realism", "total"}
    f = frames[-1]
    assert f.image.dtype == np.uint8 and f.image.shape == (32, 32, 3) and f.degraded.shape == (32, 32, 3)
    assert f.elapsed > 0 and f.total == 25


def test_loss_ignores_unknown_pixels(model):
    target, _ = target_from_latent(model)
    known = np.zeros((32, 32), bool)
    known[:, :16] = True
    other = target.copy()
    other[:, 16:] = 255 - other[:, 16:]  # change only where the mask says "fill"
    cfg = InversionConfig(steps=20, preview_every=20, seed=3)
    ops = (OperatorSpec("mask"),)
    a = list(run(model, InversionRequest(target=target, operators=ops, known=known, config=cfg)))[-1]
    b = list(run(model, InversionRequest(target=other, operators=ops, known=known, config=cfg)))[-1]
    assert np.array_equal(a.image, b.image)
    assert a.losses == b.losses
    # ...while without the mask the change does matter.
    c = list(run(model, InversionRequest(target=other, config=cfg)))[-1]
    assert not np.array_equal(a.image, c.image)


def test_deterministic_for_a_seed(model):
    target, _ = target_from_latent(model)
    cfg = InversionConfig(steps=15, preview_every=5, seed=7, optimize_noise=True)
    a = [f.image for f in run(model, InversionRequest(target=target, config=cfg))]
    b = [f.image for f in run(model, InversionRequest(target=target, config=cfg))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = [f.image for f in run(model, InversionRequest(target=target, config=cfg.replace(seed=8)))]
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_closing_the_iterator_stops_and_cleans_up(model, caplog):
    target, _ = target_from_latent(model)
    it = run(model, InversionRequest(target=target, config=InversionConfig(steps=5000, preview_every=1)))
    with caplog.at_level(logging.DEBUG, logger="engine.inversion"):
        first = next(it)
        next(it)
        it.close()
    assert first.step == 1
    assert any("finished or cancelled" in r.message for r in caplog.records)
    with pytest.raises(StopIteration):
        next(it)


@pytest.mark.parametrize("space", ["z", "w", "w+"])
def test_latent_spaces_shapes_and_progress(model, space):
    target, _ = target_from_latent(model)
    cfg = InversionConfig(latent_space=space, steps=40, preview_every=40, weights=LossWeights(perceptual=0))
    f = list(run(model, InversionRequest(target=target, config=cfg)))[-1]
    shape = {"z": (32,), "w": (1, 32), "w+": (model.G.num_ws, 32)}[space]
    assert tuple(f.latent.shape) == shape and f.latent_space == space
    start = list(run(model, InversionRequest(target=target, config=cfg.replace(steps=1, preview_every=1))))[-1]
    assert f.losses["l2"] < start.losses["l2"]


def test_lbfgs_and_noise_optimisation(model):
    target, _ = target_from_latent(model)
    cfg = InversionConfig(optimizer="lbfgs", lr=0.5, steps=15, preview_every=15, optimize_noise=True,
                          weights=LossWeights(perceptual=0))
    f = list(run(model, InversionRequest(target=target, config=cfg)))[-1]
    assert f.noises is not None and len(f.noises) == len(model.G.synthesis.noise_layers())
    for n in f.noises:  # re-normalised every step
        assert abs(float(n.mean())) < 1e-4 and abs(float(n.std(unbiased=False)) - 1) < 1e-3
    assert "noise_reg" in f.losses and np.isfinite(f.losses["total"])


def test_continue_from_given_latent(model):
    target, ws = target_from_latent(model)
    cfg = InversionConfig(init="given", steps=2, preview_every=1, lr=1e-4, weights=LossWeights(perceptual=0),
                          initial_noise_factor=0.0)
    f = list(run(model, InversionRequest(target=target, config=cfg, init_latent=ws)))[0]
    assert f.losses["l2"] < 1e-3  # starting at the true latent
    with pytest.raises(EngineError):
        list(run(model, InversionRequest(target=target, config=cfg, init_latent=torch.zeros(3, 3))))


def test_best_of_k_start_is_no_worse_than_mean(model):
    target, _ = target_from_latent(model, seed=5)
    base = InversionConfig(steps=1, preview_every=1, lr=1e-6, lr_rampup=0.0, initial_noise_factor=0.0,
                           weights=LossWeights(perceptual=0))
    mean = list(run(model, InversionRequest(target=target, config=base)))[-1]
    best = list(run(model, InversionRequest(target=target, config=base.replace(init="best-of-k", num_starts=16))))[-1]
    assert best.losses["l2"] <= mean.losses["l2"] + 1e-6


@pytest.mark.parametrize("bad", [dict(steps=0), dict(steps=-1), dict(steps=10 ** 9), dict(lr=float("nan")),
                                 dict(latent_space="q"), dict(weights=LossWeights(l2=float("nan"))),
                                 dict(weights=LossWeights(l1=-1.0)), dict(preview_every=0), dict(start_psi=1.5),
                                 dict(start_psi=float("nan")), dict(start_psi=-0.1)])
def test_bad_configs_rejected(model, bad):
    target, _ = target_from_latent(model)
    with pytest.raises(EngineError):
        next(run(model, InversionRequest(target=target, config=InversionConfig(**bad))))


def test_bad_target_and_masks_rejected(model):
    with pytest.raises(EngineError, match="target"):
        next(run(model, InversionRequest(target=np.zeros((16, 16, 3), np.uint8))))
    target, _ = target_from_latent(model)
    with pytest.raises(EngineError, match="known"):
        next(run(model, InversionRequest(target=target, operators=(OperatorSpec("mask"),),
                                         known=np.zeros((32, 32), bool))))
    with pytest.raises(EngineError, match="empty"):
        request_for_task("inpaint", target, painted=np.zeros((32, 32), bool))
    with pytest.raises(EngineError, match="whole image"):
        request_for_task("inpaint", target, painted=np.ones((32, 32), bool))


def test_perceptual_fallback_is_reported(model, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("LATENTBRUSH_VGG16", raising=False)
    target, _ = target_from_latent(model)
    cfg = InversionConfig(perceptual="vgg16", steps=2, preview_every=1)
    f = next(run(model, InversionRequest(target=target, config=cfg)))
    assert any("VGG16" in m for m in f.messages) and "perceptual" not in f.losses


def test_dcgan_runs_in_z():
    m = prepare(make_tiny_model(arch="dcgan"))
    target = np.full((64, 64, 3), 128, np.uint8)
    cfg = InversionConfig(latent_space="z", steps=5, preview_every=5)
    f = list(run(m, InversionRequest(target=target, config=cfg)))[-1]
    assert f.latent.shape == (16,) and f.image.shape == (64, 64, 3)


def test_scribble_strokes_pull_colour(model):
    strokes = np.full((32, 32, 3), 255, np.uint8)
    strokes[8:24, 8:24] = (220, 30, 30)
    req = request_for_task("scribble", strokes, config=InversionConfig(latent_space="w+", steps=60,
                                                                      preview_every=60, lr=0.1,
                                                                      weights=LossWeights(perceptual=0)))
    assert req.known.sum() == 16 * 16
    f = list(run(model, req))[-1]
    patch = f.image[8:24, 8:24].astype(float).mean(axis=(0, 1))
    assert patch[0] > patch[1] + 40 and patch[0] > patch[2] + 40


def test_scribble_defaults_pull_colour_in_w_plus_with_rows_held_together(model):
    """The scribble task's defaults: w+ whose rows the spread term keeps together, still drawing the strokes."""
    from engine import default_config
    strokes = np.full((32, 32, 3), 255, np.uint8)
    strokes[8:24, 8:24] = (220, 30, 30)
    cfg = default_config("scribble", arch="stylegan2").replace(steps=80, preview_every=80)
    finals = {}
    for spread in (cfg.weights.layer_spread, 0.0):
        c = cfg.replace(weights=dataclasses.replace(cfg.weights, layer_spread=spread))
        finals[spread] = list(run(model, request_for_task("scribble", strokes, config=c)))[-1]
    f = finals[cfg.weights.layer_spread]
    patch = f.image[8:24, 8:24].astype(float).mean(axis=(0, 1))
    assert patch[0] > patch[1] + 30 and patch[0] > patch[2] + 30
    assert cfg.latent_space == "w+" and f.latent.shape[0] == model.G.num_ws > 1
    spread_of = {k: float(torch.as_tensor(v.latent).float().std(dim=0).mean()) for k, v in finals.items()}
    assert spread_of[cfg.weights.layer_spread] < 0.5 * spread_of[0.0]


def test_scribble_seeds_start_from_their_own_truncated_samples(model):
    """The scribble default starts at the best of the seed's samples: another seed draws another picture, the same
    seed the same one, and start_psi pulls the samples to the average (0: every start is the average)."""
    from engine import default_config
    from engine.runstate import new_run
    strokes = np.full((32, 32, 3), 255, np.uint8)
    strokes[8:24, 8:24] = (220, 30, 30)
    cfg = default_config("scribble", arch="stylegan2").replace(steps=20, preview_every=20)
    assert cfg.init == "best-of-k" and cfg.num_starts > 1 and 0 < cfg.start_psi < 1
    finals = [list(run(model, request_for_task("scribble", strokes, config=cfg.replace(seed=s))))[-1]
              for s in (0, 1, 0)]
    assert np.array_equal(finals[0].image, finals[2].image)
    assert np.abs(finals[0].image.astype(int) - finals[1].image.astype(int)).mean() > 2

    w_avg = model.w_avg.reshape(1, 1, -1)

    def start(psi):
        return new_run(model, request_for_task("scribble", strokes, config=cfg.replace(start_psi=psi)), None).param
    assert torch.allclose(start(0.0), w_avg.expand_as(start(0.0)))
    half, whole = (float((start(p) - w_avg).norm()) for p in (0.5, 1.0))
    assert 0 < half < whole


def test_layer_spread_pulls_w_plus_rows_together(model):
    """The w+ spread term is 0 for equal rows, logged when active, and keeps the rows closer than without it."""
    from engine.losses import layer_spread
    same = torch.randn(1, 1, 8).expand(2, 5, 8)
    assert float(layer_spread(same).abs().max()) < 1e-12
    assert float(layer_spread(torch.randn(1, 5, 8))[0]) > 0
    target, _ = target_from_latent(model)

    def spread(weight):
        cfg = InversionConfig(latent_space="w+", steps=60, lr=0.1, preview_every=60,
                              weights=LossWeights(l2=1.0, perceptual=0.0, layer_spread=weight))
        last = list(run(model, InversionRequest(target=target, config=cfg)))[-1]
        return float(layer_spread(last.latent[None].float())[0]), last.losses

    free, free_losses = spread(0.0)
    held, held_losses = spread(10.0)
    assert "layer_spread" not in free_losses and "layer_spread" in held_losses
    assert held < 0.5 * free
