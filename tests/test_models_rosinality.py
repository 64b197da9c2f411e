"""rosinality `stylegan2-pytorch` checkpoints (`{'g_ema': state_dict, 'latent_avg': w}`) -> our StyleGAN2."""
from __future__ import annotations

import argparse
import math
import os

import pytest
import torch

import models
from models import rosinality
from tests.tiny import fixed_z, make_tiny_model


def _blur_kernel(factor: int = 2) -> torch.Tensor:
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = torch.outer(k, k)
    return k / k.sum() * factor ** 2


def to_rosinality_g_ema(G: models.Generator) -> dict[str, torch.Tensor]:
    """Our generator's state under rosinality's `g_ema` names and shapes (the inverse of models/rosinality.py).

    rosinality keeps the raw N(0,1) weights and applies 1/sqrt(fan_in) at run time, exactly like the official
    code, so tensors carry over unchanged; only names and a few leading singleton dims differ.
    """
    sd = G.state_dict()
    out: dict[str, torch.Tensor] = {}
    for i in range(G.mapping.num_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"].clone()
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"].clone()

    def styled(dst: str, src: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None].clone()  # [1, O, I, 3, 3]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"].clone()
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"].clone()
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1).clone()
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"].clone()

    def to_rgb(dst: str, src: str) -> None:
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None].clone()  # [1, 3, I, 1, 1]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"].clone()
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"].clone()
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1).clone()

    out["input.input"] = sd["synthesis.b4.const"][None].clone()
    styled("conv1", "synthesis.b4.conv1")
    to_rgb("to_rgb1", "synthesis.b4.torgb")
    for k, res in enumerate(G.synthesis.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0")
        out[f"convs.{2 * k}.conv.blur.kernel"] = _blur_kernel()
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1")
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
        out[f"to_rgbs.{k}.upsample.kernel"] = _blur_kernel()
    for j, layer in enumerate(G.synthesis.noise_layers()):
        out[f"noises.noise_{j}"] = layer.noise_const[None, None].clone()
    return out


def write_rosinality(path, G, *, latent_avg: bool = True, edit=None):
    sd = to_rosinality_g_ema(G)
    if edit is not None:
        edit(sd)
    ckpt = {"g_ema": sd}
    if latent_avg:
        ckpt["latent_avg"] = G.mapping.w_avg.clone()
    torch.save(ckpt, path)
    return path


@pytest.mark.parametrize("resolution", [16, 64])
def test_rosinality_checkpoint_reproduces_generator(tmp_path, resolution):
    src = make_tiny_model(resolution=resolution, seed=21)
    path = write_rosinality(tmp_path / "550000.pt", src.G)
    loaded = models.load_model(path)
    assert loaded.D is None
    cfg = loaded.config
    assert cfg.arch == "stylegan2" and cfg.resolution == resolution and cfg.w_avg_known
    assert cfg.g_kwargs["synthesis_kwargs"] == src.config.g_kwargs["synthesis_kwargs"]
    assert cfg.g_kwargs["mapping_kwargs"] == src.config.g_kwargs["mapping_kwargs"]
    z = fixed_z(src, 2)
    # Pure renaming of the same tensors, so our forward pass is bit-identical (rosinality's own code would
    # differ from this only by ~1e-7 relative: it folds 1/sqrt(fan_in) in before the 1e-8 demod epsilon).
    assert torch.equal(loaded.G.mapping(z, truncation_psi=0.5), src.G.mapping(z, truncation_psi=0.5))
    assert torch.equal(loaded.G(z, noise_mode="const"), src.G(z, noise_mode="const"))
    ref, got = src.G.state_dict(), loaded.G.state_dict()
    assert got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)
    assert not any(p.requires_grad for p in loaded.G.parameters())


def test_rosinality_without_latent_avg(tmp_path):
    src = make_tiny_model(resolution=16, seed=21)
    path = write_rosinality(tmp_path / "g.pth", src.G, latent_avg=False)
    loaded = models.load_model(path)
    assert not loaded.config.w_avg_known
    assert torch.equal(loaded.G.mapping.w_avg, torch.zeros(src.G.w_dim))
    z = fixed_z(src, 2)
    assert torch.equal(loaded.G(z), src.G(z))  # psi = 1 does not use w_avg


def test_rosinality_demodulation_matches_folded_formulation():
    # rosinality: w' = scale * w * s; w' / sqrt(sum w'^2 + 1e-8). Ours: w * s / sqrt(sum (w s)^2 + 1e-8).
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn([8, 16, 3, 3], generator=gen)
    styles = torch.randn([2, 16], generator=gen)
    x = torch.randn([2, 16, 8, 8], generator=gen)
    ours = models.stylegan2.modulated_conv2d(x, weight, styles, padding=1)
    scale = 1 / math.sqrt(16 * 9)
    w = scale * weight[None] * styles[:, None, :, None, None]
    w = w * torch.rsqrt(w.square().sum([2, 3, 4]) + 1e-8)[:, :, None, None, None]
    theirs = torch.cat([torch.nn.functional.conv2d(x[i:i + 1], w[i], padding=1) for i in range(2)])
    assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("key", ["style.2.bias", "convs.1.noise.weight", "to_rgbs.0.bias", "noises.noise_3",
                                 "conv1.conv.weight", "style.1.weight", "convs.0.conv.weight", "input.input"])
def test_missing_key_is_named(tmp_path, key):
    src = make_tiny_model(resolution=16, seed=21)
    path = write_rosinality(tmp_path / "bad.pt", src.G, edit=lambda sd: sd.pop(key))
    with pytest.raises(models.CheckpointError, match="missing") as info:
        models.load_model(path)
    assert key in str(info.value)


def test_unexpected_key_is_named(tmp_path):
    src = make_tiny_model(resolution=16, seed=21)
    path = write_rosinality(tmp_path / "bad.pt", src.G, edit=lambda sd: sd.update({"style.9.scale": torch.ones(1)}))
    with pytest.raises(models.CheckpointError, match="style.9.scale"):
        models.load_model(path)


def test_wrong_shape_is_named(tmp_path):
    src = make_tiny_model(resolution=16, seed=21)

    def edit(sd):
        sd["convs.1.conv.modulation.bias"] = torch.zeros(5)

    path = write_rosinality(tmp_path / "bad.pt", src.G, edit=edit)
    with pytest.raises(models.CheckpointError, match="wrong shape") as info:
        models.load_model(path)
    assert "synthesis.b8.conv1.affine.bias" in str(info.value)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _Plain:
    def __init__(self):
        self.lr = 0.002


@pytest.mark.parametrize("payload", ["reduce-os-system", "class-instance"])
def test_non_tensor_objects_are_refused(tmp_path, payload):
    marker = tmp_path / "pwned"
    src = make_tiny_model(resolution=16, seed=21)
    obj = _Evil(marker) if payload == "reduce-os-system" else _Plain()
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": to_rosinality_g_ema(src.G), "extra": obj}, path)
    with pytest.raises(models.CheckpointError, match="plain tensors"):
        models.load_model(path)
    assert not marker.exists()


def test_training_checkpoint_with_args_and_optimiser_state(tmp_path):
    # rosinality's train.py saves g, d, g_ema, optimiser states, its argparse args and ada_aug_p.
    src = make_tiny_model(resolution=16, seed=21)
    g_ema = to_rosinality_g_ema(src.G)
    # Adam's state_dict layout (built by hand: importing/stepping torch.optim costs seconds on a busy CPU).
    first = next(iter(g_ema.values()))
    optim_state = {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(first),
                                 "exp_avg_sq": torch.zeros_like(first)}},
                   "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "eps": 1e-8, "weight_decay": 0,
                                     "amsgrad": False, "maximize": False, "foreach": None, "capturable": False,
                                     "differentiable": False, "fused": None, "params": [0]}]}
    args = argparse.Namespace(path="lmdb", iter=800000, batch=16, size=16, r1=10.0, arch="stylegan2",
                              ckpt=None, augment=False, channel_multiplier=2, latent=32, n_mlp=2)
    path = tmp_path / "010000.pt"
    torch.save({"g": g_ema, "d": {"convs.0.0.weight": torch.zeros(2)}, "g_ema": g_ema,
                "g_optim": optim_state, "d_optim": optim_state, "args": args, "ada_aug_p": 0.0}, path)
    loaded = models.load_model(path)
    z = fixed_z(src, 2)
    assert torch.equal(loaded.G(z), src.G(z))
    assert not loaded.config.w_avg_known


def test_not_a_rosinality_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(models.CheckpointError, match="g_ema"):
        models.load_model(path)
    path.write_bytes(b"garbage")
    with pytest.raises(models.CheckpointError):
        models.load_model(path)


def test_channel_layout_inference_rejects_irregular_channels(tmp_path):
    src = make_tiny_model(resolution=16, seed=21)

    def edit(sd):
        # Pretend the 8 px block had 12 channels: not min(channel_base // res, channel_max) for any base/max.
        for k in ("convs.0", "convs.1"):
            w = sd[f"{k}.conv.weight"]
            sd[f"{k}.conv.weight"] = torch.zeros([1, 12, 12 if k == "convs.1" else w.shape[2], 3, 3])

    path = write_rosinality(tmp_path / "odd.pt", src.G, edit=edit)
    with pytest.raises(models.CheckpointError, match="channel layout"):
        rosinality.load_rosinality(path)
