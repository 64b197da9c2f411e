"""The inversion loop: optimise a latent (z, w or w+, optionally noise) so that op(G(latent)) matches a target.

`run(model, request)` is a generator of `Frame`s (see engine/types.py for every shape and polarity).
Closing the generator (`.close()`, or dropping it) stops the loop at the current step; a `finally`
releases the optimiser state and tensors. No host synchronisation happens between frames.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from . import losses as L
from .model import EngineModel
from .operators import OperatorChain, build_chain
from .perceptual import build_extractor, feature_distance
from .schedule import latent_noise_scale, learning_rate
from .types import EngineError, Frame, InversionConfig, InversionRequest

log = logging.getLogger(__name__)


def to_tensor(rgb: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 `[H, W, 3]` RGB -> float `[1, 3, H, W]` in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float `[1, 3, H, W]` (or `[3, H, W]`) in [-1, 1] -> uint8 `[H, W, 3]` RGB."""
    if x.ndim == 4:
        x = x[0]
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def validate_request(model: EngineModel, request: InversionRequest) -> None:
    """Raise EngineError for anything the loop cannot run."""
    request.config.validate()
    r = model.resolution
    t = request.target
    if not isinstance(t, np.ndarray) or t.dtype != np.uint8 or t.shape != (r, r, 3):
        raise EngineError(f"target must be a uint8 RGB array of shape ({r}, {r}, 3), got "
                          f"{getattr(t, 'dtype', type(t).__name__)} {getattr(t, 'shape', '')}")
    k = request.known
    if k is not None:
        if not isinstance(k, np.ndarray) or k.shape != (r, r):
            raise EngineError(f"known mask must be a bool array of shape ({r}, {r}), got {getattr(k, 'shape', k)}")
        if not k.any():
            raise EngineError("the mask leaves no known pixel: nothing to match")
    if request.config.init == "given" and request.init_latent is None:
        raise EngineError("init='given' needs init_latent")


@dataclass
class _Latent:
    """The optimised variables and how they become ws `[N, num_ws, w_dim]`."""

    param: torch.Tensor
    space: str
    noises: list[torch.Tensor]

    def ws(self, G: torch.nn.Module, offset: torch.Tensor | None = None) -> torch.Tensor:
        p = self.param if offset is None else self.param + offset
        if self.space == "z":
            return G.mapping(p)
        if self.space == "w":
            return p.expand(-1, G.num_ws, -1)
        return p


def _initial_latent(model: EngineModel, request: InversionRequest, score) -> torch.Tensor:
    """Starting point `[1, ...]` for the configured space: w_avg, best of K random starts, or given."""
    cfg, G, dev = request.config, model.G, model.device
    space = cfg.latent_space
    if cfg.init == "given":
        lat = torch.as_tensor(request.init_latent, dtype=torch.float32).to(dev)
        expected = {"z": (G.z_dim,), "w": (1, G.w_dim), "w+": (G.num_ws, G.w_dim)}[space]
        if tuple(lat.shape) == (G.num_ws, G.w_dim) and space == "w":
            lat = lat.mean(dim=0, keepdim=True)
        if tuple(lat.shape) != expected:
            raise EngineError(f"init_latent shape {list(lat.shape)} does not fit latent space {space} "
                              f"(expected {list(expected)})")
        return lat[None].clone()
    if cfg.init == "best-of-k":
        gen = torch.Generator().manual_seed(cfg.seed)
        z = torch.randn(cfg.num_starts, G.z_dim, generator=gen).to(dev)
        with torch.inference_mode():
            ws = G.mapping(z)
            scores = score(G.synthesis(ws, noise_mode="const"))
        best = int(scores.argmin())
        if space == "z":
            return z[best:best + 1].clone()
        w = ws[best:best + 1]
        return (w[:, :1] if space == "w" else w).clone()
    if space == "z":
        return torch.zeros(1, G.z_dim, device=dev)
    w = model.w_avg.reshape(1, 1, -1)
    return (w if space == "w" else w.repeat(1, G.num_ws, 1)).clone()


def run(model: EngineModel, request: InversionRequest) -> Iterator[Frame]:
    """Optimise and yield frames every `preview_every` steps plus the final one (`done=True`)."""
    validate_request(model, request)
    cfg: InversionConfig = request.config
    G, dev, res = model.G, model.device, model.resolution
    weights = cfg.weights
    chain: OperatorChain = build_chain(request.operators).to(dev)
    target = chain.project_target(to_tensor(request.target, dev))
    known = torch.ones(1, 1, res, res, device=dev)
    if chain.uses_mask and request.known is not None:
        known = torch.from_numpy(request.known.astype(np.float32)).to(dev)[None, None]
    extractor, used_kind, messages = build_extractor(cfg.perceptual if weights.perceptual > 0 else "none",
                                                     D=model.D, device=dev)
    autocast = (torch.autocast(dev.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext())
    target_feats = None
    if extractor is not None:
        with torch.no_grad(), autocast:
            target_feats = [f.detach() for f in extractor(target * known)]

    def pixel_score(img: torch.Tensor) -> torch.Tensor:
        d = chain(img.float())
        return L.masked_l2(d, target.expand_as(d), known.expand(d.shape[0], -1, -1, -1))

    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    latent = _Latent(_initial_latent(model, request, pixel_score).requires_grad_(True), cfg.latent_space, [])
    if cfg.optimize_noise and getattr(G.synthesis, "noise_layers", None) and G.synthesis.noise_layers():
        if request.init_noises is not None:
            latent.noises = [n.detach().clone().to(dev).reshape(1, 1, *n.shape[-2:]) for n in request.init_noises]
        else:
            latent.noises = [torch.randn(b.shape, generator=gen, device=dev) for b in G.synthesis.noise_buffers()]
        for n in latent.noises:
            n.requires_grad_(True)
    params = [latent.param] + latent.noises
    center = torch.zeros_like(latent.param) if cfg.latent_space == "z" else model.w_avg.reshape(1, 1, -1)
    if cfg.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    else:
        opt = torch.optim.LBFGS(params, lr=cfg.lr, max_iter=1, history_size=10, line_search_fn="strong_wolfe")
    use_latent_noise = cfg.optimizer == "adam" and cfg.initial_noise_factor > 0
    t0 = time.perf_counter()
    state: dict[str, torch.Tensor] = {}

    def objective(step: int) -> torch.Tensor:
        t = step / cfg.steps
        offset = None
        if use_latent_noise:
            scale = latent_noise_scale(t, w_std=model.w_std, initial_factor=cfg.initial_noise_factor,
                                       ramp_length=cfg.noise_ramp_length)
            if scale > 0:
                offset = torch.randn(latent.param.shape, generator=gen, device=dev) * scale
        with autocast:
            ws = latent.ws(G, offset)
            img = G.synthesis(ws, noise_mode="const", noises=latent.noises or None)
            degraded = chain(img)
        terms: dict[str, torch.Tensor] = {}
        if weights.l2 > 0:
            terms["l2"] = L.masked_l2(degraded.float(), target, known)
        if weights.l1 > 0:
            terms["l1"] = L.masked_l1(degraded.float(), target, known)
        if extractor is not None:
            with autocast:
                feats = extractor(degraded * known)
            terms["perceptual"] = feature_distance(feats, target_feats, known)
        if weights.latent_dist > 0:
            terms["latent_dist"] = L.latent_distance(latent.param, center)
        if weights.realism > 0 and model.D is not None:
            with autocast:
                terms["realism"] = L.realism(model.D(img))
        if latent.noises and weights.noise_reg > 0:
            terms["noise_reg"] = L.noise_regularization(latent.noises)
        total = sum(getattr(weights, k) * v for k, v in terms.items())
        state.update(terms={k: v.detach() for k, v in terms.items()}, total=total.detach(),
                     img=img.detach(), degraded=degraded.detach())
        return total.sum()

    def frame(step: int, *, final: bool) -> Frame:
        losses = {k: float(v.sum()) for k, v in state["terms"].items()}
        losses["total"] = float(state["total"].sum())
        img, degraded = state["img"], state["degraded"]
        if final:
            with torch.inference_mode(), autocast:
                img = G.synthesis(latent.ws(G).detach(), noise_mode="const",
                                  noises=[n.detach() for n in latent.noises] or None)
                degraded = chain(img)
        lat = latent.param.detach()[0].float().cpu().clone()
        noises = tuple(n.detach()[0].cpu().clone() for n in latent.noises) or None
        return Frame(step=step, total=cfg.steps, image=to_uint8(img), degraded=to_uint8(degraded), losses=losses,
                     elapsed=time.perf_counter() - t0, latent=lat, latent_space=cfg.latent_space, noises=noises,
                     messages=messages, done=final)

    try:
        for step in range(cfg.steps):
            if cfg.optimizer == "adam":
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step / cfg.steps, base_lr=cfg.lr, rampup=cfg.lr_rampup,
                                                rampdown=cfg.lr_rampdown)
                opt.zero_grad(set_to_none=True)
                objective(step).backward()
                opt.step()
            else:
                def closure() -> torch.Tensor:
                    opt.zero_grad(set_to_none=True)
                    loss = objective(step)
                    loss.backward()
                    return loss
                opt.step(closure)
            if latent.noises:
                L.normalize_noises_(latent.noises)
            done = step + 1 == cfg.steps
            if done or (step + 1) % cfg.preview_every == 0:
                f = frame(step + 1, final=done)
                if not all(np.isfinite(v) for v in f.losses.values()):
                    raise EngineError("the optimisation diverged (non-finite loss): lower the learning rate")
                yield f
    finally:
        # Runs on normal completion, on error and when the consumer closes the generator (Stop button).
        opt.zero_grad(set_to_none=True)
        state.clear()
        params.clear()
        log.debug("inversion finished or cancelled after %.2fs", time.perf_counter() - t0)
