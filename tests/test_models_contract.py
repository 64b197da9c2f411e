"""The generator/discriminator contract the engine relies on, for StyleGAN2 at 16..256 px and for DCGAN."""
from __future__ import annotations

import math

import pytest
import torch

import models
from tests.tiny import TINY_DCGAN_Z_DIM, TINY_W_DIM, TINY_Z_DIM, fixed_z, make_tiny_model


def _set_noise_strength(G, value: float = 0.5) -> None:
    with torch.no_grad():
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(value)


# ----------------------------------------------------------------------------------------------- StyleGAN2 G


def test_generator_attributes(tiny_model_any_res):
    G, R = tiny_model_any_res.G, tiny_model_any_res.config.resolution
    assert isinstance(G, models.Generator)
    assert (G.z_dim, G.w_dim, G.img_resolution) == (TINY_Z_DIM, TINY_W_DIM, R)
    assert G.num_ws == 2 * int(math.log2(R)) - 2
    assert G.mapping.num_ws == G.synthesis.num_ws == G.num_ws
    assert not G.training and not any(p.requires_grad for p in G.parameters())


def test_mapping_shape_and_truncation(tiny_model_any_res):
    G = tiny_model_any_res.G
    z = fixed_z(G, 3)
    ws = G.mapping(z, truncation_psi=1.0)
    assert ws.shape == (3, G.num_ws, G.w_dim) and ws.dtype == torch.float32
    assert torch.isfinite(ws).all()
    # Without truncation every layer gets the same w.
    assert torch.equal(ws, ws[:, :1].expand_as(ws))
    w_avg = G.mapping.w_avg
    assert w_avg.abs().sum() > 0  # tiny models have a non-trivial w_avg
    ws0 = G.mapping(z, truncation_psi=0.0)
    assert torch.allclose(ws0, w_avg.expand_as(ws0), atol=1e-6)
    ws_half = G.mapping(z, truncation_psi=0.5)
    assert torch.allclose(ws_half, w_avg + 0.5 * (ws - w_avg), atol=1e-5)
    cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=2)
    assert torch.allclose(cut[:, :2], w_avg.expand(3, 2, -1), atol=1e-6)
    assert torch.equal(cut[:, 2:], ws[:, 2:])


def test_synthesis_noise_modes(tiny_model_any_res):
    G, R = tiny_model_any_res.G, tiny_model_any_res.config.resolution
    _set_noise_strength(G, 0.5)
    ws = G.mapping(fixed_z(G, 2))
    out = {mode: G.synthesis(ws, noise_mode=mode) for mode in ("const", "random", "none")}
    for mode, img in out.items():
        assert img.shape == (2, 3, R, R) and img.dtype == torch.float32, mode
        assert torch.isfinite(img).all(), mode
        assert img.std() > 1e-3, mode  # not a constant image
    assert torch.equal(G.synthesis(ws, noise_mode="const"), out["const"])  # deterministic
    assert not torch.allclose(G.synthesis(ws, noise_mode="random"), out["random"])  # fresh noise each call
    assert not torch.allclose(out["none"], out["const"])
    assert not torch.allclose(out["random"], out["const"])


def test_noise_strength_is_the_only_difference_between_modes(tiny_model):
    G = tiny_model.G
    ws = G.mapping(fixed_z(G, 2))
    _set_noise_strength(G, 0.0)
    none = G.synthesis(ws, noise_mode="none")
    assert torch.allclose(G.synthesis(ws, noise_mode="const"), none)
    assert torch.allclose(G.synthesis(ws, noise_mode="random"), none)
    assert torch.equal(G.synthesis(ws, noise_mode="none"), none)


def test_synthesis_rejects_bad_arguments(tiny_model):
    G = tiny_model.G
    ws = G.mapping(fixed_z(G, 1))
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="consts")
    with pytest.raises(ValueError, match="noise_mode"):
        G(fixed_z(G, 1), noise_mode="bogus")
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(ws[:, :-1])
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(ws[0])


def test_generator_forward_is_mapping_then_synthesis(tiny_model_any_res):
    G = tiny_model_any_res.G
    z = fixed_z(G, 2)
    expected = G.synthesis(G.mapping(z, truncation_psi=0.7), noise_mode="const")
    assert torch.equal(G(z, truncation_psi=0.7, noise_mode="const"), expected)


def test_bf16_autocast_on_cpu(tiny_model_any_res):
    G = tiny_model_any_res.G
    ws = G.mapping(fixed_z(G, 2))
    ref = G.synthesis(ws, noise_mode="const")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G.synthesis(ws, noise_mode="const")
        img_full = G(fixed_z(G, 2), noise_mode="const")
    for out in (img, img_full):
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert torch.isfinite(out).all()
    rel = (img - ref).abs().mean() / ref.abs().mean()
    assert rel < 0.05, f"bf16 output deviates {rel:.3f} (mean relative) from fp32"
    assert not torch.equal(img, ref)  # it really ran in reduced precision


def test_noise_buffers_and_noises_override(tiny_model_any_res):
    G = tiny_model_any_res.G
    _set_noise_strength(G, 0.5)
    layers = G.synthesis.noise_layers()
    buffers = G.synthesis.noise_buffers()
    assert len(layers) == len(buffers) == G.num_ws - 1  # every conv layer has noise; toRGB layers do not
    for layer, buf in zip(layers, buffers):
        assert buf.shape == (1, 1, layer.resolution, layer.resolution)
        assert torch.equal(buf[0, 0], layer.noise_const)
    # Copies: editing them leaves the network's buffers alone.
    buffers[0].add_(1.0)
    assert not torch.equal(buffers[0][0, 0], layers[0].noise_const)
    buffers = G.synthesis.noise_buffers()

    ws = G.mapping(fixed_z(G, 2))
    const = G.synthesis(ws, noise_mode="const")
    assert torch.equal(G.synthesis(ws, noises=buffers), const)
    gen = torch.Generator().manual_seed(7)
    other = [torch.randn(b.shape, generator=gen) for b in buffers]
    changed = G.synthesis(ws, noises=other)
    assert changed.shape == const.shape and not torch.allclose(changed, const)
    # The override wins over noise_mode, and each map reaches its own layer (last one changes the output too).
    assert torch.equal(G.synthesis(ws, noise_mode="random", noises=other), changed)
    only_last = buffers[:-1] + [other[-1]]
    assert not torch.allclose(G.synthesis(ws, noises=only_last), const)


def test_noise_maps_receive_gradients(tiny_model):
    G = tiny_model.G
    _set_noise_strength(G, 0.5)
    ws = G.mapping(fixed_z(G, 2))
    maps = [b.requires_grad_(True) for b in G.synthesis.noise_buffers()]
    G.synthesis(ws, noises=maps).square().mean().backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)


def test_generator_gradient_wrt_ws(tiny_model):
    G = tiny_model.G
    ws = G.mapping(fixed_z(G, 1)).clone().requires_grad_(True)
    G.synthesis(ws).mean().backward()
    assert ws.grad is not None and torch.isfinite(ws.grad).all() and ws.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------- StyleGAN2 D


def test_discriminator_logits_and_features(tiny_model_any_res):
    G, D, R = tiny_model_any_res.G, tiny_model_any_res.D, tiny_model_any_res.config.resolution
    assert isinstance(D, models.Discriminator)
    img = G(fixed_z(G, 2))
    logits = D(img)
    assert logits.shape == (2, 1) and torch.isfinite(logits).all()
    feats = D.features(img)
    assert len(feats) == int(math.log2(R)) - 2
    for i, f in enumerate(feats):
        assert f.shape[0] == 2 and f.shape[2:] == (R >> (i + 1), R >> (i + 1))
        assert torch.isfinite(f).all()
    assert feats[-1].shape[2:] == (4, 4)
    assert [f.shape for f in D.features(img, max_blocks=1)] == [feats[0].shape]


@pytest.mark.parametrize("batch", [1, 3, 4, 5, 6])
def test_discriminator_any_batch_size(tiny_model, batch):
    D, R = tiny_model.D, tiny_model.config.resolution
    img = torch.randn([batch, 3, R, R], generator=torch.Generator().manual_seed(batch)).clamp(-1, 1)
    logits = D(img)
    assert logits.shape == (batch, 1) and torch.isfinite(logits).all()


def test_discriminator_minibatch_groups_do_not_mix_beyond_group(tiny_model):
    # With a batch of 8 and group size 4, sample 0's logit depends on its group (0, 2, 4, 6) only.
    D, R = tiny_model.D, tiny_model.config.resolution
    img = torch.randn([8, 3, R, R], generator=torch.Generator().manual_seed(3))
    base = D(img)
    changed = img.clone()
    changed[1] = -changed[1]  # sample 1 is in the other group (1, 3, 5, 7)
    out = D(changed)
    assert torch.equal(out[0], base[0]) and not torch.equal(out[1], base[1])


# ----------------------------------------------------------------------------------------------- DCGAN


def test_dcgan_generator_contract(tiny_dcgan):
    G = tiny_dcgan.G
    assert isinstance(G, models.DCGANGenerator)
    assert G.z_dim == G.w_dim == TINY_DCGAN_Z_DIM and G.num_ws == 1 and G.img_resolution == 64
    assert G.mapping.num_ws == G.synthesis.num_ws == 1
    z = fixed_z(G, 3)
    ws = G.mapping(z, truncation_psi=1.0)
    assert ws.shape == (3, 1, G.w_dim) and torch.equal(ws[:, 0], z)
    ws0 = G.mapping(z, truncation_psi=0.0)
    assert torch.equal(ws0, G.mapping.w_avg.expand_as(ws0))
    imgs = {mode: G.synthesis(ws, noise_mode=mode) for mode in ("const", "random", "none")}
    for img in imgs.values():
        assert img.shape == (3, 3, 64, 64) and img.dtype == torch.float32
        assert torch.isfinite(img).all() and img.abs().max() <= 1.0
    assert torch.equal(imgs["const"], imgs["random"])  # DCGAN has no noise inputs
    assert G.synthesis.noise_layers() == [] and G.synthesis.noise_buffers() == []
    assert torch.equal(G.synthesis(ws, noises=[]), imgs["const"])
    assert torch.equal(G(z, truncation_psi=0.5), G.synthesis(G.mapping(z, truncation_psi=0.5)))
    with pytest.raises(ValueError, match="ws must be"):
        G.synthesis(torch.zeros(1, 2, G.w_dim))


def test_dcgan_rejects_unknown_noise_mode(tiny_dcgan):
    G = tiny_dcgan.G
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(G.mapping(fixed_z(G, 1)), noise_mode="bogus")


def test_dcgan_bf16_autocast(tiny_dcgan):
    G = tiny_dcgan.G
    z = fixed_z(G, 2)
    ref = G(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img = G(z)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert (img - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_dcgan_discriminator(tiny_dcgan, batch):
    G, D = tiny_dcgan.G, tiny_dcgan.D
    assert isinstance(D, models.DCGANDiscriminator)
    img = G(fixed_z(G, batch))
    logits = D(img)
    assert logits.shape == (batch, 1) and torch.isfinite(logits).all()
    feats = D.features(img)
    assert [tuple(f.shape[2:]) for f in feats] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert all(f.shape[0] == batch for f in feats)


def test_dcgan_is_64px_only():
    with pytest.raises(ValueError):
        models.DCGANGenerator(z_dim=8, img_resolution=32, ngf=4)
    with pytest.raises(ValueError):
        models.DCGANDiscriminator(img_resolution=32, ndf=4)


# ----------------------------------------------------------------------------------------------- fixtures


def test_tiny_models_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = make_tiny_model(resolution=16, seed=3)
    assert torch.equal(torch.rand(3), expected)
    b = make_tiny_model(resolution=16, seed=3)
    c = make_tiny_model(resolution=16, seed=4)
    z = fixed_z(a, 1)
    assert torch.equal(a.G(z), b.G(z))
    assert not torch.allclose(a.G(z), c.G(z))
    assert isinstance(a, models.LoadedModel) and a.config.resolution == 16


def test_a_synthesis_network_without_noise_inputs_takes_no_noise_maps():
    """use_noise=False (e.g. a converted checkpoint without noise): nothing to optimise, `noises=[]` is valid."""
    from models.stylegan2 import SynthesisNetwork
    torch.manual_seed(0)
    S = SynthesisNetwork(w_dim=16, img_resolution=16, channel_base=256, channel_max=32, use_noise=False)
    assert S.noise_layers() == [] and S.noise_buffers() == []
    ws = torch.randn(2, S.num_ws, 16)
    assert torch.equal(S(ws, noises=S.noise_buffers()), S(ws, noise_mode="const"))
