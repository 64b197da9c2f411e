"""Projected feature discriminator: shapes, frozen backbone, and its place in the trainer's step and state."""
import dataclasses
import logging

import numpy as np
import pytest
import torch

from models.feature_d import FeatureDiscriminator, build_feature_discriminator
from models.mobilenet import MobileNetV2
from models.train import Trainer, TrainOptions, make_config, run_segment

META = {"input": {"scale": 0.0078125, "zero_point": 128}}


def _fd(size=64, seed=0):
    torch.manual_seed(0)
    return FeatureDiscriminator(MobileNetV2(), META, seed=seed, size=size)


def test_logits_per_scale_and_only_the_heads_train():
    fd = _fd()
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    logits = fd(x)
    assert logits.shape == (2, 3)
    logits.sum().backward()
    backbone = fd.backbone()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fd.parameters())
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through the frozen network
    # The backbone is the shipped perceptual network: never in a run's state or optimiser.
    n_backbone = sum(p.numel() for p in backbone.parameters())
    assert sum(p.numel() for p in fd.parameters()) < n_backbone
    assert not any(k.startswith(("_backbone", "backbone", "stem", "blocks")) for k in fd.state_dict())


def test_mixing_projections_are_fixed_by_seed_and_kept_in_state():
    a, b, c = _fd(seed=3), _fd(seed=3), _fd(seed=4)
    assert torch.equal(a.mix0, b.mix0) and not torch.equal(a.mix0, c.mix0)
    assert {"mix0", "mix1", "mix2"} <= set(a.state_dict())
    assert not a.mix0.requires_grad


def test_input_size_must_halve_down_to_four():
    with pytest.raises(ValueError, match="power of two"):
        _fd(size=96)
    assert _fd(size=128)(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def test_the_shipped_backbone_loads_frozen():
    fd = build_feature_discriminator(device=torch.device("cpu"), size=64)
    assert not any(p.requires_grad for p in fd.backbone().parameters())
    assert all(p.requires_grad for p in fd.parameters())


def _images(n=8, r=64):
    return torch.from_numpy(np.random.default_rng(0).integers(0, 255, (n, 3, r, r), dtype=np.uint8))


def _trainer(weight):
    opts = TrainOptions(batch=4, channel_base=256, channel_max=16, z_dim=16, bf16=False, pl_weight=0.0,
                        feature_d_weight=weight)
    return Trainer(opts, make_config(opts, data_name="random"), _images(), torch.device("cpu"))


def test_step_trains_the_heads_and_pulls_g_by_the_feature_loss():
    with_fd, without = _trainer(1.0), _trainer(0.0)
    assert without.FD is None
    heads = {k: v.clone() for k, v in with_fd.FD.state_dict().items()}
    losses = with_fd.step()
    without.step()
    assert {"fd_g", "fd_d"} <= set(losses) and all(bool(torch.isfinite(v)) for v in losses.values())
    assert any(not torch.equal(heads[k], v) for k, v in with_fd.FD.state_dict().items() if "mix" not in k)
    assert all(torch.equal(heads[k], with_fd.FD.state_dict()[k]) for k in ("mix0", "mix1", "mix2"))
    # Same seed, same batches: only the feature term can make G's first update differ.
    assert any(not torch.equal(a, b) for a, b in zip(with_fd.G.parameters(), without.G.parameters()))


def test_state_round_trip_keeps_the_heads_and_a_state_without_them_starts_fresh(caplog):
    t = _trainer(0.5)
    t.step()
    s = t.state()
    t2 = _trainer(0.5)
    t2.load_state(s)
    assert all(torch.equal(a, b) for a, b in zip(t.FD.state_dict().values(), t2.FD.state_dict().values()))
    plain = _trainer(0.0)
    plain.step()
    t3 = _trainer(0.5)
    fresh = {k: v.clone() for k, v in t3.FD.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="models.train"):
        t3.load_state(plain.state())
    assert "start fresh" in caplog.text and t3.nimg == 4
    assert all(torch.equal(fresh[k], v) for k, v in t3.FD.state_dict().items())


def test_provenance_names_the_feature_discriminator_and_dcgan_refuses_it():
    opts = TrainOptions(bf16=False, feature_d_weight=0.5)
    assert "feature discriminator weight 0.5" in run_segment(opts, data="d", n_train=1, n_held=0, nimg=1)
    assert "feature" not in run_segment(dataclasses.replace(opts, feature_d_weight=0.0), data="d", n_train=1,
                                        n_held=0, nimg=1)
    dc = TrainOptions(arch="dcgan", feature_d_weight=1.0, bf16=False)
    with pytest.raises(ValueError, match="StyleGAN2"):
        Trainer(dc, make_config(dc, data_name="random"), _images(), torch.device("cpu"))
