"""Train a StyleGAN2 or DCGAN on an image folder; resumable, bf16-autocast capable, exports native models.

CLI: `python -m models.train --data DIR --arch stylegan2|dcgan --res 64 [--kimg N] [--resume CKPT] --out DIR`.
Writes `OUT/state.pt` (resume state, torch.save of plain tensors/dicts: loadable with weights_only=True),
`OUT/samples.png` (8x8 grid of G_ema), `OUT/log.txt` and, with `--export NAME`, a native model.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import math
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .augment import POLICIES, diff_augment
from .component_d import ComponentDiscriminator
from .config import ModelConfig, build_discriminator, build_generator, dcgan_config, small_stylegan2_config
from .dataset import load_images, sharpness, split_files
from .feature_d import build_feature_discriminator
from .native import load_native, save_model
from .pixels import from_uint8, to_uint8
from .widen import widen_discriminator, widen_generator

log = logging.getLogger("models.train")


@dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters; defaults follow StyleGAN2-ADA's small-data settings scaled to a CPU."""

    arch: str = "stylegan2"
    resolution: int = 64
    batch: int = 32
    kimg: float = 100.0
    # StyleGAN2-ADA's `paper256` rate; late in a run a lower one can win: face64 from the same 311k-image state
    # reached MobileNet KID 84e-3 at 333k with --lr 0.001 against 122e-3 at 335k with this one.
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    r1_gamma: float = 0.1
    r1_interval: int = 16
    # StyleGAN2-ADA's `auto`/`paper256` value; in equal-image arms on cat64 (300k -> 324k images) it lifted held-out
    # w+ reconstruction 22.87 -> 22.97 dB at equal FID, and the engine inverts these models.
    # On face64 (283k -> 301k images) it lost: dlib KID rose 0.39 -> 0.47e-3 with it, fell to 0.33e-3 without;
    # train faces with --pl-weight 0.
    pl_weight: float = 2.0
    pl_interval: int = 4
    style_mixing: float = 0.5
    ema_kimg: float = 10.0
    ema_rampup: float = 0.05
    # Cutout (half-size grey squares at p = 1) lost to colour+translation on 5k cats and 12k faces (grey-block
    # eyes); DiffAugment keeps it for few-shot sets (~100-300 images): pass `--augment color translation cutout`.
    augment: tuple[str, ...] = ("color", "translation")
    xflip: bool = True
    bf16: bool = True
    holdout_fraction: float = 0.02
    # Training photos whose sharpness (`models.dataset.sharpness` at the training resolution) is under this are
    # left out (0: none); the held-out photos are never filtered. G copies the data's share of blurred photos; on
    # face64, 222 halved the blurred samples in 50k images, but not the broken share counted blind, and the
    # FID against the unfiltered photos rose (models/TRAINING.md), so the bundled models train with 0.
    min_sharpness: float = 0.0
    seed: int = 0
    channel_base: int = 2048
    channel_max: int = 256
    z_dim: int = 256
    # StyleGAN2-ADA's `cifar` preset (32 px) uses 2 mapping layers, `paper256` and the paper's 8.
    mapping_layers: int = 2
    dcgan_width: int = 64
    # Weight of a projected feature discriminator's loss in G's (`models.feature_d`, frozen ImageNet MobileNetV2
    # features; 0: off). Its heads train beside the pixel D with D's learning rate, without R1.
    feature_d_weight: float = 0.0
    # Weight of facial-component critics' loss in G's (`models.component_d`: the eye band and the mouth of aligned
    # faces; 0: off). They train beside the pixel D with its learning rate and lazy R1.
    component_d_weight: float = 0.0
    # Multiplies G's learning rate for the mapping network alone. Its layers carry StyleGAN2's lr multiplier 0.01,
    # so late in a run it barely moves (face64: 0.27% of w's spread in 111k images); at 100 it moved 21%, and the
    # broken sample layouts stayed (models/TRAINING.md).
    mapping_lr_scale: float = 1.0
    # Thousands of images, ending at `kimg`, over which G's and D's rates fall to 0 on a half cosine (0: constant
    # rate, as StyleGAN2 trains). On face64's plateau (70k images from 3.49M) it did not settle the broken samples:
    # FID equal to the constant-rate control's, inpainting and the blind broken count worse (models/TRAINING.md).
    lr_rampdown_kimg: float = 0.0


# Radford et al.'s DCGAN rate (Adam beta1 0.5); --lr and the R1/path-length options are StyleGAN2's only.
DCGAN_LR = 2e-4


class StopFlag:
    """Set by SIGINT/SIGTERM so the loop can save and exit cleanly."""

    def __init__(self) -> None:
        self.stop = False

    def install(self) -> None:
        def handler(signum, frame):  # noqa: ARG001
            log.info("signal %d received: saving and stopping", signum)
            self.stop = True
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


def make_config(opts: TrainOptions, *, data_name: str) -> ModelConfig:
    info = dict(name=f"{Path(data_name).name}-{opts.arch}{opts.resolution}", domain=Path(data_name).name)
    if opts.arch == "stylegan2":
        return small_stylegan2_config(resolution=opts.resolution, channel_base=opts.channel_base,
                                      channel_max=opts.channel_max, z_dim=opts.z_dim, w_dim=opts.z_dim,
                                      mapping_layers=opts.mapping_layers, **info)
    if opts.resolution != 64:
        raise ValueError("DCGAN trains at 64 px only")
    return dcgan_config(z_dim=100, ngf=opts.dcgan_width, ndf=opts.dcgan_width, **info)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 matmuls/convolutions in hardware (CUDA with bf16, or a CPU with AMX/AVX512-BF16)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # Without AMX or AVX512-BF16 oneDNN emulates bf16: one trainer step measured ~20x slower than fp32 on an AVX2
        # EPYC (0.5 vs 9.5 img/s), so "auto" must not pick it there.
        probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    return False


PRECISIONS = ("auto", "bf16", "fp32")


def use_bf16(precision: str, device: torch.device) -> bool:
    """--precision (one of PRECISIONS) -> whether to train under bf16 autocast on `device`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be auto, bf16 or fp32, not {precision!r}")
    return native_bf16(device) if precision == "auto" else precision == "bf16"


def _autocast(opts: TrainOptions, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=opts.bf16)


def sample_batch(images: torch.Tensor, batch: int, *, xflip: bool, gen: torch.Generator,
                 device: torch.device) -> torch.Tensor:
    """A random batch of uint8 `[N, 3, R, R]` images (x-flipped at random) -> float `[-1, 1]` on `device`."""
    idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
    x = images[idx]
    if xflip:
        flip = torch.rand(batch, generator=gen) < 0.5
        # torch.where, not boolean indexing: indexing by a mask needs its count, a device sync on a GPU.
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if device.type == "cuda":
        # A pageable copy waits for the GPU to drain; a pinned one is queued behind the step before it.
        x = x.pin_memory()
    return from_uint8(x.to(device, non_blocking=True))


def generate(G: torch.nn.Module, z: torch.Tensor, *, style_mixing: float) -> torch.Tensor:
    """G(z) with optional style mixing (second latent takes over from a random layer)."""
    ws = G.mapping(z, update_w_avg=G.training)
    if style_mixing > 0 and G.num_ws > 1:
        cutoff = torch.randint(1, G.num_ws, ())
        if torch.rand(()) < style_mixing:
            ws2 = G.mapping(torch.randn_like(z))
            ws = torch.cat([ws[:, :cutoff], ws2[:, cutoff:]], dim=1)
    return G.synthesis(ws, noise_mode="random")


def r1_penalty(D: torch.nn.Module, real: torch.Tensor, opts: TrainOptions, device: torch.device) -> torch.Tensor:
    real = real.detach().requires_grad_(True)
    with _autocast(opts, device):
        logits = D(diff_augment(real, opts.augment) if opts.augment else real)
    (grad,) = torch.autograd.grad(logits.float().sum(), real, create_graph=True)
    return grad.square().sum(dim=[1, 2, 3]).mean()


def save_grid(G: torch.nn.Module, path: Path, *, seed: int = 0, n: int = 8, device: torch.device) -> None:
    """n x n grid of G(z) for fixed seeds, PNG."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n * n, G.z_dim, generator=gen).to(device)
    with torch.no_grad():
        imgs = torch.cat([G(z[i:i + 16], noise_mode="const") for i in range(0, n * n, 16)])
    imgs = to_uint8(imgs).cpu()
    r = imgs.shape[-1]
    grid = imgs.reshape(n, n, 3, r, r).permute(0, 3, 1, 4, 2).reshape(n * r, n * r, 3).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)


def stylegan2_adam(params, lr: float, *, reg_interval: int = 0) -> torch.optim.Adam:
    """StyleGAN2's Adam (beta1 0, beta2 0.99). For a network with a lazy regulariser every `reg_interval` steps the
    rate and beta2 are corrected by r = interval / (interval + 1), as in the official code."""
    r = reg_interval / (reg_interval + 1) if reg_interval else 1.0
    opt = torch.optim.Adam(params, lr=lr * r, betas=(0.0, 0.99 ** r), eps=1e-8)
    reset_group_rates(opt)
    return opt


def reset_group_rates(opt: torch.optim.Optimizer, *, factor: float = 1.0) -> None:
    """Set each param group's rate to the one the optimiser was built with (its `defaults`, which loading a state
    does not touch) times the group's own `lr_scale` (1 when absent) times `factor`."""
    for group in opt.param_groups:
        group["lr"] = opt.defaults["lr"] * group.get("lr_scale", 1.0) * factor


def lr_factor(nimg: int, *, kimg: float, rampdown_kimg: float) -> float:
    """The rate's multiplier after `nimg` images: 1 until `rampdown_kimg` thousand images before `kimg`, then a half
    cosine down to 0 at `kimg` (always 1 when `rampdown_kimg` is 0)."""
    if rampdown_kimg <= 0:
        return 1.0
    t = (nimg - (kimg - rampdown_kimg) * 1000) / (rampdown_kimg * 1000)
    t = min(max(t, 0.0), 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * t))


def generator_param_groups(G: torch.nn.Module, mapping_lr_scale: float) -> list[dict]:
    """G's parameters as Adam groups: the mapping network's rate scaled by `mapping_lr_scale` (key `lr_scale`,
    which `Trainer.load_state` reapplies), the rest at the base rate. One group when the scale is 1."""
    if mapping_lr_scale == 1.0:
        return [{"params": list(G.parameters())}]
    mapping = {id(p) for p in G.mapping.parameters()}
    return [{"params": [p for p in G.parameters() if id(p) in mapping], "lr_scale": mapping_lr_scale},
            {"params": [p for p in G.parameters() if id(p) not in mapping]}]


class Critic(NamedTuple):
    """A discriminator trained beside D: kept in state.pt as `key` / `opt_<key>`, its losses `<key>_g` / `<key>_d`."""

    key: str
    net: torch.nn.Module
    opt: torch.optim.Optimizer
    weight: float
    r1: bool


class Trainer:
    """Holds networks, optimisers and counters; `step()` runs one G and one D update."""

    def __init__(self, opts: TrainOptions, config: ModelConfig, images: torch.Tensor, device: torch.device):
        self.opts, self.config, self.images, self.device = opts, config, images, device
        torch.manual_seed(opts.seed)
        self.gen = torch.Generator().manual_seed(opts.seed)
        self.G = build_generator(config).to(device).train()
        self.D = build_discriminator(config).to(device).train()
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        if opts.arch == "dcgan":
            for m in list(self.G.modules()) + list(self.D.modules()):
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                    torch.nn.init.normal_(m.weight, 0.0, 0.02)
            self.G_ema.load_state_dict(self.G.state_dict())
            self.opt_G = torch.optim.Adam(self.G.parameters(), lr=DCGAN_LR, betas=(0.5, 0.999))
            self.opt_D = torch.optim.Adam(self.D.parameters(), lr=DCGAN_LR, betas=(0.5, 0.999))
        else:
            self.opt_G = stylegan2_adam(generator_param_groups(self.G, opts.mapping_lr_scale), opts.g_lr)
            self.opt_D = stylegan2_adam(self.D.parameters(), opts.d_lr, reg_interval=opts.r1_interval)
        self.nimg = 0
        self.step_idx = 0
        self.pl_mean = torch.zeros([], device=device)
        self.FD, self.CD, self.critics = None, None, []
        if (opts.feature_d_weight > 0 or opts.component_d_weight > 0) and opts.arch != "stylegan2":
            raise ValueError("feature and component discriminators train StyleGAN2 networks only")
        if opts.feature_d_weight > 0:
            # Projected GAN trains its heads without R1.
            self.FD = build_feature_discriminator(device=device, seed=opts.seed)
            self.critics.append(Critic("FD", self.FD, stylegan2_adam(self.FD.parameters(), opts.d_lr),
                                       opts.feature_d_weight, r1=False))
        if opts.component_d_weight > 0:
            self.CD = ComponentDiscriminator(opts.resolution).to(device).train()
            self.critics.append(Critic("CD", self.CD, stylegan2_adam(self.CD.parameters(), opts.d_lr,
                                                                     reg_interval=opts.r1_interval),
                                       opts.component_d_weight, r1=True))

    def state(self) -> dict:
        return {"config": self.config.to_json(), "opts": dataclasses.asdict(self.opts),
                "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict(),
                "nimg": self.nimg, "step": self.step_idx, "pl_mean": self.pl_mean,
                "rng": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
                **{k: v for c in self.critics for k, v in ((c.key, c.net.state_dict()),
                                                           (f"opt_{c.key}", c.opt.state_dict()))}}

    def load_state(self, s: dict) -> None:
        self.G.load_state_dict(s["G"])
        self.D.load_state_dict(s["D"])
        self.G_ema.load_state_dict(s["G_ema"])
        self.opt_G.load_state_dict(s["opt_G"])
        self.opt_D.load_state_dict(s["opt_D"])
        for c in self.critics:
            if c.key not in s:
                log.info("the resumed state has no %s: its heads start fresh", c.key)
                continue
            c.net.load_state_dict(s[c.key])
            c.opt.load_state_dict(s[f"opt_{c.key}"])
        # The saved param groups carry the old run's learning rates; this run's options (e.g. --lr) win.
        for opt in (self.opt_G, self.opt_D, *(c.opt for c in self.critics)):
            reset_group_rates(opt)
        self.nimg, self.step_idx = int(s["nimg"]), int(s["step"])
        self.pl_mean = s["pl_mean"].to(self.device)
        self.gen.set_state(s["rng"])
        torch.set_rng_state(s["torch_rng"])

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.opts.augment) if self.opts.augment else x

    def step(self) -> dict[str, torch.Tensor]:
        """One G and one D update -> losses as 0-dim tensors on the device (reading one waits for the device)."""
        o, dev = self.opts, self.device
        if o.lr_rampdown_kimg > 0 and o.arch == "stylegan2":
            f = lr_factor(self.nimg, kimg=o.kimg, rampdown_kimg=o.lr_rampdown_kimg)
            for opt in (self.opt_G, self.opt_D, *(c.opt for c in self.critics)):
                reset_group_rates(opt, factor=f)
        n = o.batch
        real = sample_batch(self.images, n, xflip=o.xflip, gen=self.gen, device=dev)
        mixing = o.style_mixing if o.arch == "stylegan2" else 0.0
        # Generator update: non-saturating logistic loss.
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        for c in self.critics:
            c.net.requires_grad_(False)
        with _autocast(o, dev):
            fake = self._aug(generate(self.G, torch.randn(n, self.G.z_dim, device=dev), style_mixing=mixing))
            g_loss = F.softplus(-self.D(fake)).float().mean()
            critic_g = [F.softplus(-c.net(fake)).float().mean() for c in self.critics]
        self.opt_G.zero_grad(set_to_none=True)
        sum((c.weight * loss for c, loss in zip(self.critics, critic_g)), g_loss).backward()
        pl = torch.zeros([], device=dev)
        if o.arch == "stylegan2" and o.pl_weight > 0 and self.step_idx % o.pl_interval == 0:
            pl = self._path_length_penalty(max(n // 2, 1))
            (pl * o.pl_weight * o.pl_interval).backward()
        self.opt_G.step()
        # Discriminator update.
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with _autocast(o, dev):
            with torch.no_grad():
                fake = generate(self.G, torch.randn(n, self.G.z_dim, device=dev), style_mixing=mixing)
            fake, real_aug = self._aug(fake), self._aug(real)
            d_loss = F.softplus(self.D(fake)).float().mean() + F.softplus(-self.D(real_aug)).float().mean()
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        r1_step = o.arch == "stylegan2" and o.r1_gamma > 0 and self.step_idx % o.r1_interval == 0
        r1_weight = o.r1_gamma / 2 * o.r1_interval  # lazy: every r1_interval steps, so that much stronger
        critic_d = []
        for c in self.critics:
            c.net.requires_grad_(True)
            with _autocast(o, dev):
                loss = F.softplus(c.net(fake)).float().mean() + F.softplus(-c.net(real_aug)).float().mean()
            c.opt.zero_grad(set_to_none=True)
            loss.backward()
            if c.r1 and r1_step:
                (r1_penalty(c.net, real[: max(n // 2, 1)], o, dev) * r1_weight).backward()
            c.opt.step()
            critic_d.append(loss.detach())
        r1 = torch.zeros([], device=dev)
        if r1_step:
            r1 = r1_penalty(self.D, real[: max(n // 2, 1)], o, dev)
            (r1 * r1_weight).backward()
        self.opt_D.step()
        self.nimg += n
        self.step_idx += 1
        self._update_ema()
        losses = {"g": g_loss.detach(), "d": d_loss.detach(), "r1": r1.detach()}
        for c, lg, ld in zip(self.critics, critic_g, critic_d):
            losses.update({f"{c.key.lower()}_g": lg.detach(), f"{c.key.lower()}_d": ld})
        return losses

    def _path_length_penalty(self, batch: int) -> torch.Tensor:
        """StyleGAN2 path-length regulariser: keep |J_w^T y| close to its running mean."""
        dev = self.device
        with _autocast(self.opts, dev):
            ws = self.G.mapping(torch.randn(batch, self.G.z_dim, device=dev))
            img = self.G.synthesis(ws, noise_mode="random")
        y = torch.randn_like(img) / math.sqrt(img.shape[2] * img.shape[3])
        (grads,) = torch.autograd.grad((img.float() * y).sum(), ws, create_graph=True)
        lengths = grads.float().square().sum(2).mean(1).sqrt()
        pl_mean = self.pl_mean.lerp(lengths.mean().detach(), 0.01)
        self.pl_mean.copy_(pl_mean)
        return (lengths - pl_mean).square().mean()

    def _update_ema(self) -> None:
        o = self.opts
        ema_nimg = o.ema_kimg * 1000
        if o.ema_rampup:
            ema_nimg = min(ema_nimg, self.nimg * o.ema_rampup)
        beta = 0.5 ** (o.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            # One fused call per list, not one kernel per tensor: on a GPU the step is launch-bound.
            torch._foreach_lerp_(list(self.G_ema.parameters()), list(self.G.parameters()), 1.0 - beta)
            torch._foreach_copy_(list(self.G_ema.buffers()), list(self.G.buffers()))


def resume_from_model(path: str | Path, opts: TrainOptions, images: torch.Tensor, device: torch.device, *,
                      widen_base: int | None = None, widen_max: int | None = None,
                      widen_d_base: int | None = None, widen_d_max: int | None = None,
                      widen_blocks: dict[int, int] | None = None) -> tuple[ModelConfig, Trainer]:
    """A Trainer whose G, G_ema and D come from a native model (the shipped files keep G_ema and D only).

    `widen_base` / `widen_max` grow the generator's synthesis channels first (`widen_blocks`, {resolution:
    channels}, single blocks), `widen_d_base` / `widen_d_max` the discriminator's (`models.widen`: same images
    and logits out)."""
    config, G_ema, D = load_native(path, device="cpu", with_discriminator=True)
    if D is None:
        raise ValueError(f"{path}: has no discriminator, so it cannot be trained on")
    history = f"{config.provenance}; continued from {config.name} ({config.images_seen} images seen)"
    widen_g = widen_base is not None or widen_max is not None or bool(widen_blocks)
    widen_d = widen_d_base is not None or widen_d_max is not None
    if (widen_g or widen_d) and config.arch != "stylegan2":
        raise ValueError(f"{path}: only StyleGAN2 networks can be widened, not {config.arch}")
    if widen_g:
        G_ema, g_kwargs = widen_generator(G_ema.float(), config.g_kwargs, channel_base=widen_base,
                                          channel_max=widen_max, channels_by_res=widen_blocks, seed=opts.seed)
        config = config.replace(g_kwargs=g_kwargs)
        syn = g_kwargs["synthesis_kwargs"]
        blocks = "".join(f", {r} px block {c}" for r, c in sorted((syn.get("channels_by_res") or {}).items(),
                                                                  key=lambda rc: int(rc[0])))
        history += (f", generator widened to channel_base {syn.get('channel_base', 'default')} / channel_max "
                    f"{syn.get('channel_max', 'default')}{blocks} (new channels start unread, so the images were "
                    "unchanged)")
    if widen_d:
        D, d_kwargs = widen_discriminator(D.float(), config.d_kwargs, channel_base=widen_d_base,
                                          channel_max=widen_d_max, seed=opts.seed + 1)
        config = config.replace(d_kwargs=d_kwargs)
        history += (f", discriminator widened to channel_base {d_kwargs.get('channel_base', 'default')} / "
                    f"channel_max {d_kwargs.get('channel_max', 'default')} (same logits at the start)")
    trainer = Trainer(opts, config, images, device)
    g_state = {k: v.float() if v.is_floating_point() else v for k, v in G_ema.state_dict().items()}
    trainer.G.load_state_dict(g_state)
    trainer.G_ema.load_state_dict(g_state)
    trainer.D.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in D.state_dict().items()})
    trainer.nimg = int(config.images_seen or 0)
    # The figures in its JSON describe the old weights, not what this run will export.
    trainer.config = config.replace(metrics={}, provenance=history)
    return trainer.config, trainer


def export(trainer: Trainer, path: Path, *, licence: str, provenance: str, name: str,
           dtype: torch.dtype = torch.float16) -> Path:
    """Write G_ema + D as a native model with provenance and images seen."""
    config = trainer.config.replace(name=name, licence=licence, provenance=provenance,
                                    images_seen=trainer.nimg, w_avg_known=True)
    G = copy.deepcopy(trainer.G_ema).cpu().eval()
    return save_model(path, config, G, copy.deepcopy(trainer.D).cpu().eval(), dtype=dtype)


def keep_export(weights: Path, folder: Path, nimg: int) -> Path:
    """Copy a native export (`.safetensors` + `.json`) to `folder/STEM_NIMG.*`; returns the kept weights."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / f"{weights.stem}_{nimg}.safetensors"
    for src, dst in ((weights.with_suffix(".json"), kept.with_suffix(".json")), (weights, kept)):
        tmp = dst.with_name(dst.name + ".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)  # a judge polling the folder never reads half a file
    return kept


def run_segment(opts: TrainOptions, *, data: str, n_train: int, n_held: int, nimg: int, n_blurred: int = 0) -> str:
    """Provenance of one training run: its data, how far it got and the options that shape the weights."""
    blurred = (f", the {n_blurred} with sharpness (variance of the Laplacian at {opts.resolution} px) under "
               f"{opts.min_sharpness:g} left out" if n_blurred else "")
    where = (f"trained by models.train on {data} ({n_train} images{blurred}, {n_held} held out by name hash) to "
             f"{nimg:,} images")
    precision = "bf16" if opts.bf16 else "fp32"
    augment = "+".join(opts.augment) if opts.augment else "none"
    if opts.arch == "dcgan":
        return f"{where} ({precision}, batch {opts.batch}, lr {DCGAN_LR:g}, DiffAugment {augment})"
    lr = f"lr {opts.g_lr:g}" if opts.g_lr == opts.d_lr else f"lr G {opts.g_lr:g} D {opts.d_lr:g}"
    return (f"{where} ({precision}, batch {opts.batch}, {lr}, R1 gamma {opts.r1_gamma:g}, path-length weight "
            f"{opts.pl_weight:g}, EMA half-life {opts.ema_kimg:g} kimg, style mixing {opts.style_mixing:g}, "
            f"DiffAugment {augment}"
            + (f", MobileNetV2 feature discriminator weight {opts.feature_d_weight:g}" if opts.feature_d_weight else "")
            + (f", eye and mouth component discriminators weight {opts.component_d_weight:g}"
               if opts.component_d_weight else "")
            + (f", mapping lr x{opts.mapping_lr_scale:g}" if opts.mapping_lr_scale != 1.0 else "")
            + (f", rate down to 0 on a half cosine over the last {opts.lr_rampdown_kimg:g} kimg"
               if opts.lr_rampdown_kimg else "")
            + ")")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m models.train", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of training images")
    p.add_argument("--arch", choices=("stylegan2", "dcgan"), default="stylegan2")
    p.add_argument("--res", type=int, default=64)
    p.add_argument("--kimg", type=float, default=100.0, help="train until this many thousand images seen")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--resume", help="state.pt to continue from")
    p.add_argument("--continue", dest="continue_run", action="store_true",
                   help="continue --out's own state.pt when it has one (a kept machine), else start as the other "
                   "options say (e.g. --resume-model from the shipped weights): one command for every session")
    p.add_argument("--resume-model", help="native NAME.safetensors to continue from (G and G_ema start from its "
                   "G_ema, D from its D; fresh optimiser state): the shipped models are their own resume point")
    p.add_argument("--widen-channel-base", type=int, help="with --resume-model: grow the generator's synthesis "
                   "channels to this channel_base first (the images it draws stay the same; D is kept)")
    p.add_argument("--widen-channel-max", type=int, help="with --resume-model: the widened generator's channel_max")
    p.add_argument("--widen-block", nargs="+", metavar="RES:CHANNELS", default=[],
                   help="with --resume-model: widen single synthesis blocks, e.g. 4:512 8:512 (the coarse blocks, "
                   "where a face's layout is chosen)")
    p.add_argument("--widen-d-channel-base", type=int, help="with --resume-model: grow the discriminator's "
                   "channels the same way (same logits at the start; the 4x4 head keeps its width)")
    p.add_argument("--widen-d-channel-max", type=int, help="with --resume-model: the widened discriminator's "
                   "channel_max (at most its 4x4 head's width)")
    p.add_argument("--images-seen", type=int, help="with --resume-model: count from here instead of the model's "
                   "images_seen (e.g. 0 for a fine-tune on new data)")
    p.add_argument("--domain", help="domain recorded in the exported config (default: the data folder's name)")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: library default)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="bf16 autocast or fp32; auto: bf16 only where the device runs it in hardware")
    p.add_argument("--no-bf16", action="store_true", help="same as --precision fp32")
    p.add_argument("--lr", type=float, default=TrainOptions.g_lr, help="StyleGAN2 G and D learning rate "
                   "(also on --resume, replacing the saved one)")
    p.add_argument("--lr-rampdown-kimg", type=float, default=TrainOptions.lr_rampdown_kimg,
                   help="StyleGAN2: over this many thousand images ending at --kimg, lower G's and D's rates to 0 "
                   "on a half cosine (0: constant rate)")
    p.add_argument("--r1-gamma", type=float, default=0.1)
    p.add_argument("--ema-kimg", type=float, default=TrainOptions.ema_kimg,
                   help="G_ema half-life in thousands of images (capped early in a run by the 5%% ramp-up)")
    p.add_argument("--pl-weight", type=float, default=TrainOptions.pl_weight,
                   help="path-length regulariser weight (0: off)")
    p.add_argument("--style-mixing", type=float, default=TrainOptions.style_mixing,
                   help="probability that a batch mixes two latents (StyleGAN2-ADA: 0.9 in paper256, 0 in cifar)")
    p.add_argument("--feature-d-weight", type=float, default=TrainOptions.feature_d_weight,
                   help="weight of a projected discriminator on frozen ImageNet MobileNetV2 features in G's loss "
                   "(models.feature_d; 0: off); its heads are kept in state.pt, not in the exported model")
    p.add_argument("--component-d-weight", type=float, default=TrainOptions.component_d_weight,
                   help="weight of eye-band and mouth critics on aligned faces in G's loss (models.component_d; "
                   "0: off); kept in state.pt, not in the exported model")
    p.add_argument("--mapping-lr-scale", type=float, default=TrainOptions.mapping_lr_scale,
                   help="multiply G's learning rate for the mapping network alone (StyleGAN2 only; its "
                   "layers already learn at 0.01x, as in the official code)")
    p.add_argument("--channel-base", type=int, default=2048)
    p.add_argument("--channel-max", type=int, default=256)
    p.add_argument("--z-dim", type=int, default=256)
    p.add_argument("--mapping-layers", type=int, help="StyleGAN2 mapping network depth of a new network "
                   f"(default {TrainOptions.mapping_layers}; a resumed network keeps its own)")
    p.add_argument("--holdout", type=float, default=0.02, help="fraction of files held out (by name hash)")
    p.add_argument("--min-sharpness", type=float, default=TrainOptions.min_sharpness,
                   help="leave out training images whose variance of the Laplacian (grey, at the training "
                   "resolution) is under this; 0 keeps all (faces: 222 leaves out UTKFace's blurriest 8.5%%)")
    p.add_argument("--snapshot-min", type=float, default=5.0, help="minutes between state/sample saves")
    p.add_argument("--export", help="also write a native model here at each snapshot (NAME.safetensors)")
    p.add_argument("--keep-exports", metavar="DIR", help="with --export: also copy each snapshot's export to "
                   "DIR/NAME_IMAGES.safetensors (+ .json), the candidates to judge")
    p.add_argument("--licence", default="unknown")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--augment", nargs="*", choices=POLICIES, default=list(TrainOptions.augment),
                   help="DiffAugment policies for D's inputs (none: no augmentation)")
    p.add_argument("--metric", nargs="*", default=[], help="sample-quality features to log against the held-out "
                   "images (mobilenet, dlib-face) every --metric-kimg; appended to OUT/metrics.jsonl")
    p.add_argument("--metric-kimg", type=float, default=20.0)
    p.add_argument("--metric-fake", type=int, default=300, help="generated samples per metric evaluation")
    a = p.parse_args(argv)
    if a.continue_run and a.resume:
        p.error("--continue picks its own state (--out's state.pt); leave out --resume")
    if a.keep_exports and not a.export:
        p.error("--keep-exports copies the exports of --export; give --export too")
    widen = (a.widen_channel_base, a.widen_channel_max, a.widen_d_channel_base, a.widen_d_channel_max)
    if (any(v is not None for v in widen) or a.widen_block) and not a.resume_model:
        p.error("--widen-channel-base/--widen-channel-max/--widen-block/--widen-d-channel-base/"
                "--widen-d-channel-max widen a model given with --resume-model")
    try:
        a.widen_blocks = {int(r): int(c) for r, c in (item.split(":") for item in a.widen_block)}
    except ValueError:
        p.error(f"--widen-block takes RES:CHANNELS pairs such as 8:512, got {a.widen_block}")
    if a.mapping_layers is not None and (a.resume or a.resume_model):
        p.error("--mapping-layers shapes a new network; a resumed one keeps its own mapping depth")
    if a.mapping_layers is not None and a.mapping_layers < 1:
        p.error("--mapping-layers must be at least 1")
    if a.mapping_lr_scale != 1.0 and a.arch != "stylegan2":
        p.error("--mapping-lr-scale scales a StyleGAN2 mapping network's rate; DCGAN has none")
    if a.mapping_lr_scale <= 0:
        p.error("--mapping-lr-scale must be positive")
    if a.lr_rampdown_kimg != 0 and a.arch != "stylegan2":
        p.error("--lr-rampdown-kimg lowers StyleGAN2's rates; DCGAN trains at a fixed one")
    if a.lr_rampdown_kimg < 0:
        p.error("--lr-rampdown-kimg must be 0 or more")
    return a


class SampleQualityLog:
    """FID/KID of G_ema against the held-out images, features of the real images computed once."""

    def __init__(self, names: list[str], held: list[Path], resolution: int, *, fake: int, path: Path):
        from .evaluate_samples import load_real  # noqa: PLC0415 - only when metrics are asked for
        from .sample_quality import EXTRACTORS  # noqa: PLC0415
        self.fns = {n: EXTRACTORS[n]() for n in names}
        real = load_real(held[0].parent, resolution, names=[p.name for p in held])
        self.real = {n: fn(real) for n, fn in self.fns.items()}
        self.fake, self.path = fake, path

    def __call__(self, trainer: "Trainer") -> dict:
        from .evaluate_samples import generate_uint8, scores  # noqa: PLC0415
        imgs = generate_uint8(trainer.G_ema, self.fake, seed=123)
        row: dict = {"images_seen": trainer.nimg, "time": time.time()}
        for n, fn in self.fns.items():
            sc = scores(self.real[n], fn(imgs))
            row[n] = {"fid": sc["fid"], "kid": sc["kid"]}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        log.info("sample quality at %d images: %s", trainer.nimg,
                 "  ".join(f"{n} FID {v['fid']:.3f} KID {v['kid'] * 1000:.2f}e-3" for n, v in row.items()
                           if isinstance(v, dict)))
        return row


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    bf16 = use_bf16("fp32" if a.no_bf16 else a.precision, device)
    opts = TrainOptions(arch=a.arch, resolution=a.res, batch=a.batch, kimg=a.kimg, bf16=bf16, g_lr=a.lr, d_lr=a.lr,
                        r1_gamma=a.r1_gamma, pl_weight=a.pl_weight, ema_kimg=a.ema_kimg, holdout_fraction=a.holdout,
                        style_mixing=a.style_mixing, feature_d_weight=a.feature_d_weight,
                        component_d_weight=a.component_d_weight, mapping_lr_scale=a.mapping_lr_scale,
                        lr_rampdown_kimg=a.lr_rampdown_kimg,
                        seed=a.seed, channel_base=a.channel_base, channel_max=a.channel_max, z_dim=a.z_dim,
                        mapping_layers=a.mapping_layers or TrainOptions.mapping_layers,
                        augment=tuple(a.augment), min_sharpness=a.min_sharpness)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    fh = logging.FileHandler(out / "log.txt")
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger().addHandler(fh)
    log.info("precision %s on %s", "bf16 autocast" if bf16 else "fp32", device)
    train_files, held = split_files(a.data, holdout_fraction=opts.holdout_fraction)
    (out / "heldout.txt").write_text("\n".join(p.name for p in held) + "\n")
    images = load_images(train_files, opts.resolution)
    n_blurred = 0
    if opts.min_sharpness > 0:
        keep = torch.from_numpy(sharpness(images) >= opts.min_sharpness)
        n_blurred = int((~keep).sum())
        if n_blurred == len(images):
            raise SystemExit(f"error: every training image has sharpness under {opts.min_sharpness:g}")
        images = images[keep]
        log.info("left out %d of %d training images with sharpness under %g", n_blurred, len(keep),
                 opts.min_sharpness)
    config = make_config(opts, data_name=a.data)
    if a.continue_run and (out / "state.pt").is_file():
        # A kept machine: the run's own optimiser state beats the shipped weights' fresh one. Widening options
        # were applied when the state began, so they are not applied again.
        a.resume, a.resume_model, a.images_seen = str(out / "state.pt"), None, None
        log.info("--continue: %s has a state.pt, continuing it", out)
    if a.resume:
        s = torch.load(a.resume, map_location=device, weights_only=True)
        config = ModelConfig.from_json(s["config"])
        trainer = Trainer(opts, config, images, device)
        trainer.load_state(s)
        log.info("resumed from %s at %d images", a.resume, trainer.nimg)
    elif a.resume_model:
        config, trainer = resume_from_model(a.resume_model, opts, images, device,
                                            widen_base=a.widen_channel_base, widen_max=a.widen_channel_max,
                                            widen_d_base=a.widen_d_channel_base, widen_d_max=a.widen_d_channel_max,
                                            widen_blocks=a.widen_blocks)
        if a.images_seen is not None:
            trainer.nimg = a.images_seen
        log.info("resumed from model %s at %d images (fresh optimiser state)", a.resume_model, trainer.nimg)
    else:
        trainer = Trainer(opts, config, images, device)
    if a.domain and a.domain != trainer.config.domain:
        # A model's task defaults were chosen with its own domain's gallery: a fine-tune onto another domain
        # starts from the engine's (grumpycat64 deblurs its photos best in w+, where cat64 needs W).
        if trainer.config.task_defaults:
            log.info("new domain %s: dropping %s's task defaults %s", a.domain, trainer.config.domain,
                     trainer.config.task_defaults)
        trainer.config = trainer.config.replace(domain=a.domain, task_defaults={})
    stop = StopFlag()
    stop.install()
    def provenance() -> str:
        segment = run_segment(opts, data=Path(a.data).name, n_train=len(train_files), n_held=len(held),
                              nimg=trainer.nimg, n_blurred=n_blurred)
        # A run continued from a shipped model keeps that model's history, on --resume too.
        return f"{trainer.config.provenance}; then {segment}" if trainer.config.provenance else segment

    def snapshot() -> None:
        tmp = out / "state.pt.tmp"
        torch.save(trainer.state(), tmp)
        tmp.replace(out / "state.pt")
        save_grid(trainer.G_ema, out / "samples.png", device=device)
        if a.export:
            weights = export(trainer, Path(a.export), licence=a.licence, provenance=provenance(),
                             name=Path(a.export).stem)
            if a.keep_exports:
                keep_export(weights, Path(a.keep_exports), trainer.nimg)

    quality = (SampleQualityLog(a.metric, held, opts.resolution, fake=a.metric_fake, path=out / "metrics.jsonl")
               if a.metric and held else None)
    next_metric = trainer.nimg
    t_last, t_snap, n_last = time.time(), time.time(), trainer.nimg
    finite = torch.ones([], dtype=torch.bool, device=device)

    def diverged() -> bool:
        # Losses are read only here (a device sync), not every step; weights are never saved after a bad step.
        if bool(finite):
            return False
        log.error("non-finite loss by %d images: stopping without saving", trainer.nimg)
        return True

    while trainer.nimg < opts.kimg * 1000 and not stop.stop:
        losses = trainer.step()
        finite &= torch.isfinite(torch.stack(list(losses.values()))).all()
        now = time.time()
        if now - t_last > 60:
            if diverged():
                return 1
            ips = (trainer.nimg - n_last) / (now - t_last)
            log.info("kimg %.1f  img/s %.1f  G %.3f  D %.3f  R1 %.3f%s", trainer.nimg / 1000, ips,
                     float(losses["g"]), float(losses["d"]), float(losses["r1"]),
                     "".join(f"  {c.key} G {float(losses[c.key.lower() + '_g']):.3f} "
                             f"D {float(losses[c.key.lower() + '_d']):.3f}" for c in trainer.critics))
            t_last, n_last = now, trainer.nimg
        if quality is not None and trainer.nimg >= next_metric:
            with torch.autocast(device.type, enabled=False):
                quality(trainer)
            next_metric = trainer.nimg + a.metric_kimg * 1000
        if now - t_snap > a.snapshot_min * 60:
            if diverged():
                return 1
            snapshot()
            t_snap = now
    if diverged():
        return 1
    snapshot()
    log.info("stopped at %d images (%s)", trainer.nimg, "signal" if stop.stop else "done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
