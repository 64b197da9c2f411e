"""Widening a trained generator or discriminator: same output, more channels, new weights that learn, growth only."""
import pytest
import torch

from models.config import build_discriminator, build_generator, small_stylegan2_config
from models.widen import block_channels, discriminator_channels, widen_discriminator, widen_generator


def _trained_like_generator():
    cfg = small_stylegan2_config(resolution=16, channel_base=128, channel_max=32, z_dim=16, w_dim=16)
    torch.manual_seed(1)
    G = build_generator(cfg).eval()
    with torch.no_grad():  # move off the init so a wrong rescale or a stray new weight shows in the output
        for p in G.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return cfg, G


def test_widened_generator_draws_the_same_images_with_more_channels():
    cfg, G = _trained_like_generator()
    wide, kwargs = widen_generator(G, cfg.g_kwargs, channel_base=512, channel_max=64)
    assert block_channels(G) == {4: 32, 8: 16, 16: 8}
    assert block_channels(wide) == {4: 64, 8: 64, 16: 32}
    assert kwargs["synthesis_kwargs"] == {"channel_base": 512, "channel_max": 64}
    assert wide.synthesis.b16.conv1.weight.shape[:2] == (32, 32)
    z = torch.randn(4, 16)
    for mode in ("const", "none"):
        ref = G(z, noise_mode=mode)
        assert torch.allclose(wide(z, noise_mode=mode), ref, atol=1e-4 * ref.abs().max().item())
    assert torch.equal(wide.mapping.w_avg, G.mapping.w_avg)


def test_single_coarse_blocks_widen_alone_and_draw_the_same_images():
    cfg, G = _trained_like_generator()
    wide, kwargs = widen_generator(G, cfg.g_kwargs, channels_by_res={4: 64, 8: 48})
    assert block_channels(wide) == {4: 64, 8: 48, 16: 8}  # the finest block keeps its width
    assert kwargs["synthesis_kwargs"]["channels_by_res"] == {"4": 64, "8": 48}  # JSON's string keys
    assert cfg.g_kwargs["synthesis_kwargs"].get("channels_by_res") is None  # the input kwargs are not touched
    z = torch.randn(4, 16)
    ref = G(z, noise_mode="const")
    assert torch.allclose(wide(z, noise_mode="const"), ref, atol=1e-4 * ref.abs().max().item())
    again, kwargs2 = widen_generator(wide, kwargs, channels_by_res={16: 16})  # merged with the earlier blocks
    assert block_channels(again) == {4: 64, 8: 48, 16: 16}
    assert kwargs2["synthesis_kwargs"]["channels_by_res"] == {"4": 64, "8": 48, "16": 16}
    with pytest.raises(ValueError, match="shrink"):
        widen_generator(wide, kwargs, channels_by_res={4: 16})
    with pytest.raises(ValueError, match="channels_by_res"):
        widen_generator(G, cfg.g_kwargs, channels_by_res={32: 64})  # no such block


def test_new_channels_receive_gradient_so_they_can_learn():
    cfg, G = _trained_like_generator()
    wide, _ = widen_generator(G, cfg.g_kwargs, channel_base=512, channel_max=64)
    wide.requires_grad_(True)
    wide(torch.randn(2, 16), noise_mode="const").square().mean().backward()
    conv, rgb = wide.synthesis.b16.conv1, wide.synthesis.b16.torgb
    assert conv.weight[:8, 8:].abs().sum() == 0  # old outputs do not read the new inputs yet...
    assert conv.weight.grad[:8, 8:].abs().sum() > 0  # ...but are pushed to
    assert rgb.weight.grad[:, 8:].abs().sum() > 0


def test_widening_refuses_to_shrink_a_block():
    cfg, G = _trained_like_generator()
    with pytest.raises(ValueError, match="16 px 8->4"):
        widen_generator(G, cfg.g_kwargs, channel_base=64, channel_max=64)


def _trained_like_discriminator():
    cfg = small_stylegan2_config(resolution=32, channel_base=128, channel_max=32, z_dim=16, w_dim=16)
    torch.manual_seed(2)
    D = build_discriminator(cfg).eval()
    with torch.no_grad():
        for p in D.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return cfg, D


def test_widened_discriminator_gives_the_same_logits_with_more_channels():
    cfg, D = _trained_like_discriminator()
    wide, kwargs = widen_discriminator(D, cfg.d_kwargs, channel_base=512)
    assert discriminator_channels(D) == {32: 4, 16: 8, 8: 16, 4: 32}
    assert discriminator_channels(wide) == {32: 16, 16: 32, 8: 32, 4: 32}
    assert kwargs["channel_base"] == 512 and cfg.d_kwargs["channel_base"] == 128
    img = torch.rand(8, 3, 32, 32) * 2 - 1
    ref = D(img)
    assert torch.allclose(wide(img), ref, atol=1e-4 * ref.abs().max().item())
    # The old channels of every block's features are the old features; the new ones carry signal of their own.
    for old, new in zip(D.features(img), wide.features(img)):
        assert torch.allclose(new[:, :old.shape[1]], old, atol=1e-4 * old.abs().max().item())
        if new.shape[1] > old.shape[1]:
            assert new[:, old.shape[1]:].abs().mean() > 0.01


def test_widened_discriminator_new_channels_receive_gradient():
    cfg, D = _trained_like_discriminator()
    wide, _ = widen_discriminator(D, cfg.d_kwargs, channel_base=512)
    wide.requires_grad_(True)
    wide(torch.rand(4, 3, 32, 32) * 2 - 1).sum().backward()
    conv = wide.b16.conv0
    assert conv.weight[:8, 8:].abs().sum() == 0
    assert conv.weight.grad[:8, 8:].abs().sum() > 0


def test_widening_a_discriminator_refuses_to_shrink_or_to_grow_its_head():
    cfg, D = _trained_like_discriminator()
    with pytest.raises(ValueError, match="16 px 8->4"):
        widen_discriminator(D, cfg.d_kwargs, channel_base=64)
    with pytest.raises(ValueError, match="4x4 head would grow 32->64"):
        widen_discriminator(D, cfg.d_kwargs, channel_base=512, channel_max=64)
