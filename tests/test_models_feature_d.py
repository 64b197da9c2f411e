"""Projected feature discriminator: shapes, frozen backbone, and its place in the trainer's step and state."""
import pytest
import torch

from models.feature_d import FeatureDiscriminator, build_feature_discriminator
from models.mobilenet import MobileNetV2
from tests.tiny import tiny_trainer

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


def _trainer(weight):
    return tiny_trainer(feature_d_weight=weight)


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
