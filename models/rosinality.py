"""Convert rosinality `stylegan2-pytorch` checkpoints (`{'g_ema': state_dict}`) to our StyleGAN2 by name.

Layout mapping (rosinality -> ours): `style.{i}` -> `mapping.fc{i-1}`, `input.input` -> `b4.const`,
`conv1`/`to_rgb1` -> `b4.conv1`/`b4.torgb`, `convs.{2k}`/`convs.{2k+1}` -> `b{8*2^k}.conv0`/`.conv1`,
`to_rgbs.{k}` -> `b{8*2^k}.torgb`, `noises.noise_{j}` -> the j-th layer's `noise_const`.
rosinality's modulated conv folds 1/sqrt(fan_in) into the weight, which demodulation cancels exactly
(up to its 1e-8 epsilon); for toRGB we apply it as the official `weight_gain` does. No `w_avg` is stored:
the config says `w_avg_known=False` and the engine estimates it.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig, build_generator
from .strict_load import CheckpointError, load_strict


def _infer(sd: dict[str, torch.Tensor]) -> dict:
    n_rgbs = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.")})
    resolution = 4 * 2 ** n_rgbs
    n_mlp = len({k.split(".")[1] for k in sd if k.startswith("style.") and k.endswith(".weight")})
    try:
        w_dim = sd["style.1.weight"].shape[1]
        channels = {4: sd["conv1.conv.weight"].shape[1]}
        for k in range(n_rgbs):
            channels[8 * 2 ** k] = sd[f"convs.{2 * k}.conv.weight"].shape[1]
    except KeyError as exc:
        raise CheckpointError(f"rosinality checkpoint: missing {exc.args[0]}") from exc
    channel_max = max(channels.values())
    channel_base = channels[resolution] * resolution
    for res, ch in channels.items():
        if min(channel_base // res, channel_max) != ch:
            raise CheckpointError(f"rosinality checkpoint: channel layout {channels} is not expressible as "
                                  "min(channel_base // res, channel_max)")
    return dict(z_dim=w_dim, c_dim=0, w_dim=w_dim, img_resolution=resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=n_mlp),
                synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max))


def convert_state(sd: dict[str, torch.Tensor], resolution: int, n_mlp: int) -> dict[str, torch.Tensor]:
    """rosinality g_ema state dict -> our Generator state dict (names and shapes)."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in sd:
            raise CheckpointError(f"rosinality checkpoint: missing {key}")
        used.add(key)
        return sd[key]

    for i in range(n_mlp):
        out[f"mapping.fc{i}.weight"] = take(f"style.{i + 1}.weight")
        out[f"mapping.fc{i}.bias"] = take(f"style.{i + 1}.bias")
    out["mapping.w_avg"] = torch.zeros(sd["style.1.weight"].shape[1])

    def styled(src: str, dst: str, noise_key: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        out[f"{dst}.noise_const"] = take(noise_key).reshape(take(noise_key).shape[-2:])

    def torgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight")[0]
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").flatten()

    out["synthesis.b4.const"] = take("input.input")[0]
    styled("conv1", "synthesis.b4.conv1", "noises.noise_0")
    torgb("to_rgb1", "synthesis.b4.torgb")
    n_blocks = int(math.log2(resolution)) - 2
    for k in range(n_blocks):
        res = 8 * 2 ** k
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", f"noises.noise_{2 * k + 1}")
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", f"noises.noise_{2 * k + 2}")
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")
    # FIR filters are fixed [1,3,3,1] buffers in both codes; rosinality stores them as 'kernel'.
    leftover = sorted(k for k in sd if k not in used and not k.endswith(".kernel"))
    if leftover:
        raise CheckpointError(f"rosinality checkpoint: unexpected entries {leftover[:10]}")
    return out


def load_rosinality(path: str | Path, *, device: str | torch.device = "cpu",
                    name: str | None = None) -> tuple[ModelConfig, nn.Module, None]:
    """Read `g_ema` from a rosinality `.pt` (weights_only) -> (config, G, None)."""
    path = Path(path)
    try:  # rosinality's train.py also saves its argparse `args`: inert, so allowed alongside plain tensors
        with torch.serialization.safe_globals([argparse.Namespace]):
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path.name}: not a loadable torch checkpoint with plain tensors ({exc})") from exc
    if not isinstance(ckpt, dict) or "g_ema" not in ckpt:
        raise CheckpointError(f"{path.name}: no 'g_ema' state dict (is this a rosinality stylegan2-pytorch file?)")
    sd = ckpt["g_ema"]
    g_kwargs = _infer(sd)
    latent_avg = ckpt.get("latent_avg")
    config = ModelConfig(arch="stylegan2", g_kwargs=g_kwargs, name=name or path.stem,
                         w_avg_known=latent_avg is not None,
                         provenance=f"rosinality stylegan2-pytorch checkpoint {path.name}")
    G = build_generator(config)
    state = convert_state(sd, g_kwargs["img_resolution"], g_kwargs["mapping_kwargs"]["num_layers"])
    if latent_avg is not None:
        state["mapping.w_avg"] = torch.as_tensor(latent_avg).reshape(-1)
    # Our non-noise resample_filter buffers are constants; take them from the freshly built network.
    for k, v in G.state_dict().items():
        if k.endswith("resample_filter"):
            state[k] = v
    load_strict(G, state, what=f"{path.name} g_ema")
    return config, G.to(device).eval(), None
