"""Frozen-weight caches in StyleGAN2 layers never serve stale or inference-mode tensors."""
import torch

from tests.tiny import fixed_z, make_tiny_model


def test_cache_invalidates_when_weights_change():
    G = make_tiny_model(resolution=32).G
    z = fixed_z(G, 1)
    before = G(z)
    with torch.no_grad():
        for p in G.parameters():
            p.mul_(1.1)  # in-place update bumps each tensor's version
    after = G(z)
    fresh = make_tiny_model(resolution=32).G
    with torch.no_grad():
        for p in fresh.parameters():
            p.mul_(1.1)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, fresh(z), atol=1e-6)


def test_inference_mode_cache_does_not_break_autograd():
    G = make_tiny_model(resolution=32).G
    z = fixed_z(G, 1)
    with torch.inference_mode():
        G(z)
    ws = G.mapping(z).detach().requires_grad_(True)
    G.synthesis(ws).square().sum().backward()
    assert ws.grad is not None and float(ws.grad.abs().sum()) > 0


def test_training_weights_get_gradients():
    G = make_tiny_model(resolution=32).G.train().requires_grad_(True)
    G(fixed_z(G, 2)).square().sum().backward()
    assert all(p.grad is not None for n, p in G.named_parameters() if "noise_strength" not in n)
