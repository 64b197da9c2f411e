"""Per-run optimisation state and the batched objective/update shared by single and multi-run engines.

A `RunState` holds one run's target `[1,3,R,R]` (float, [-1,1]), known weight `[1,1,R,R]` (1 = known),
operator chain, latent `[1, ...]`, optional noise maps `[1,1,r,r]`, Adam moments and step counter.
`objective(model, runs, ...)` evaluates any number of compatible runs as ONE generator batch and returns
the per-run weighted loss `[B]`; `adam_update` applies each run's own learning rate schedule.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from models.pixels import from_uint8
from models.pixels import to_uint8 as pixels_to_uint8

from . import losses as L
from .model import EngineModel
from .operators import OperatorChain, build_chain
from .perceptual import feature_distance
from .schedule import latent_noise_scale, learning_rate
from .types import EngineError, InversionConfig, InversionRequest, LossWeights

TERMS = ("l1", "l2", "perceptual", "latent_dist", "layer_spread", "realism", "noise_reg")
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def to_tensor(rgb: np.ndarray, device: torch.device | str) -> torch.Tensor:
    """uint8 `[H, W, 3]` RGB -> float `[1, 3, H, W]` in [-1, 1]."""
    return from_uint8(torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None])


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float `[1, 3, H, W]` (or `[3, H, W]`) in [-1, 1] -> uint8 `[H, W, 3]` RGB."""
    if x.ndim == 4:
        x = x[0]
    return pixels_to_uint8(x).permute(1, 2, 0).cpu().numpy()


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


def latent_to_ws(G: nn.Module, p: torch.Tensor, space: str) -> torch.Tensor:
    """Batch of latents `[B, ...]` in `space` -> ws `[B, num_ws, w_dim]`."""
    if space == "z":
        return G.mapping(p)
    if space == "w":
        return p.expand(-1, G.num_ws, -1)
    return p


@dataclass(eq=False)
class RunState:
    """Everything one run needs between steps (mutable; owned by one engine loop)."""

    cfg: InversionConfig
    chain: OperatorChain
    target: torch.Tensor
    known: torch.Tensor
    param: torch.Tensor
    center: torch.Tensor
    gen: torch.Generator
    noises: list[torch.Tensor] = field(default_factory=list)
    target_feats: list[torch.Tensor] | None = None
    messages: tuple[str, ...] = ()
    perceptual_kind: str = "none"
    extractor: nn.Module | None = None
    step: int = 0
    moments: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    t0: float = field(default_factory=time.perf_counter)
    last: dict = field(default_factory=dict)

    @property
    def weights(self) -> LossWeights:
        return self.cfg.weights

    def tensors(self) -> list[torch.Tensor]:
        return [self.param] + self.noises

    def batch_key(self) -> tuple:
        """Runs with equal keys can share one generator batch."""
        return (self.cfg.latent_space, self.cfg.bf16, self.perceptual_kind, len(self.noises), self.cfg.optimizer)


def initial_latent(model: EngineModel, request: InversionRequest, chain: OperatorChain, target: torch.Tensor,
                   known: torch.Tensor) -> torch.Tensor:
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
            if space == "z":
                z = z * cfg.start_psi
            ws = G.mapping(z)
            if space != "z" and cfg.start_psi != 1:
                ws = model.w_avg.reshape(1, 1, -1).lerp(ws, cfg.start_psi)
            # A few starts at a time: sixteen 1024 px images at once would hold gigabytes for a moment.
            scores = torch.cat([L.masked_l2(d, target.expand_as(d), known.expand(d.shape[0], -1, -1, -1))
                                for d in (chain(G.synthesis(part, noise_mode="const")) for part in ws.split(4))])
        best = int(scores.argmin())
        if space == "z":
            return z[best:best + 1].clone()
        w = ws[best:best + 1]
        return (w[:, :1] if space == "w" else w).clone()
    if space == "z":
        return torch.zeros(1, G.z_dim, device=dev)
    w = model.w_avg.reshape(1, 1, -1)
    return (w if space == "w" else w.repeat(1, G.num_ws, 1)).clone()


def autocast_for(cfg: InversionConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext()


def new_run(model: EngineModel, request: InversionRequest, extractor: nn.Module | None,
            messages: tuple[str, ...] = (), perceptual_kind: str = "none") -> RunState:
    """Validate the request and set up its state (target features computed once here)."""
    validate_request(model, request)
    cfg, G, dev, res = request.config, model.G, model.device, model.resolution
    chain = build_chain(request.operators).to(dev)
    target = chain.project_target(to_tensor(request.target, dev))
    known = torch.ones(1, 1, res, res, device=dev)
    if chain.uses_mask and request.known is not None:
        known = torch.from_numpy(request.known.astype(np.float32)).to(dev)[None, None]
    target_feats = None
    if extractor is not None:
        with torch.no_grad(), autocast_for(cfg, dev):
            target_feats = [f.detach() for f in extractor(target * known)]
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    param = initial_latent(model, request, chain, target, known)
    noises: list[torch.Tensor] = []
    layers = G.synthesis.noise_layers() if hasattr(G.synthesis, "noise_layers") else []
    if cfg.optimize_noise and layers:
        if request.init_noises is not None:
            noises = [n.detach().clone().float().to(dev).reshape(1, 1, *n.shape[-2:]) for n in request.init_noises]
        else:
            noises = [torch.randn(b.shape, generator=gen, device=dev) for b in G.synthesis.noise_buffers()]
    center = torch.zeros_like(param) if cfg.latent_space == "z" else model.w_avg.reshape(1, 1, -1).clone()
    return RunState(cfg=cfg, chain=chain, target=target, known=known, param=param, center=center, gen=gen,
                    noises=noises, target_feats=target_feats, messages=messages, perceptual_kind=perceptual_kind,
                    extractor=extractor)


def objective(model: EngineModel, runs: list[RunState], P: torch.Tensor, noises: list[torch.Tensor],
              extractor: nn.Module | None, *, latent_noise: bool) -> torch.Tensor:
    """Weighted loss per run `[B]` for latents P `[B, ...]` (one batch through G); stores per-run results."""
    G, dev = model.G, model.device
    cfg0 = runs[0].cfg
    space = cfg0.latent_space
    B = len(runs)
    if latent_noise:
        offsets = []
        for r in runs:
            scale = latent_noise_scale(r.step / r.cfg.steps, w_std=model.w_std,
                                       initial_factor=r.cfg.initial_noise_factor,
                                       ramp_length=r.cfg.noise_ramp_length)
            offsets.append(torch.randn(r.param.shape, generator=r.gen, device=dev) * scale if scale > 0
                           else torch.zeros_like(r.param))
        P_in = P + torch.cat(offsets)
    else:
        P_in = P
    known = torch.cat([r.known for r in runs]) if B > 1 else runs[0].known
    target = torch.cat([r.target for r in runs]) if B > 1 else runs[0].target
    with autocast_for(cfg0, dev):
        img = G.synthesis(latent_to_ws(G, P_in, space), noise_mode="const", noises=noises or None)
        degraded = (torch.cat([r.chain(img[i:i + 1]) for i, r in enumerate(runs)]) if B > 1
                    else runs[0].chain(img))
    W = {k: torch.tensor([getattr(r.weights, k) for r in runs], device=dev) for k in TERMS}
    active = {k for k in TERMS if any(getattr(r.weights, k) > 0 for r in runs)}
    terms: dict[str, torch.Tensor] = {}
    if "l2" in active:
        terms["l2"] = L.masked_l2(degraded.float(), target, known)
    if "l1" in active:
        terms["l1"] = L.masked_l1(degraded.float(), target, known)
    if "perceptual" in active and extractor is not None and runs[0].target_feats is not None:
        with autocast_for(cfg0, dev):
            feats = extractor(degraded * known)
        tfeats = ([torch.cat(fs) for fs in zip(*[r.target_feats for r in runs])] if B > 1
                  else runs[0].target_feats)
        terms["perceptual"] = feature_distance(feats, tfeats, known)
    if "latent_dist" in active:
        centers = torch.cat([r.center for r in runs]) if B > 1 else runs[0].center
        terms["latent_dist"] = L.latent_distance(P, centers)
    if "layer_spread" in active and space == "w+":
        terms["layer_spread"] = L.layer_spread(P)
    if "realism" in active and model.D is not None:
        with autocast_for(cfg0, dev):
            # One D call per run: minibatch-stddev would otherwise mix statistics across users' runs.
            terms["realism"] = torch.cat([L.realism(model.D(img[i:i + 1])) for i in range(B)])
    if "noise_reg" in active and noises:
        terms["noise_reg"] = L.noise_regularization(noises)
    if not terms:
        raise EngineError("no active loss term (perceptual network unavailable and pixel weights 0)")
    total = sum(W[k] * v for k, v in terms.items())
    img_d, deg_d, tot_d = img.detach(), degraded.detach(), total.detach()
    for i, r in enumerate(runs):
        r.last = {"terms": {k: v.detach()[i] for k, v in terms.items() if getattr(r.weights, k) > 0},
                  "total": tot_d[i], "img": img_d[i:i + 1], "degraded": deg_d[i:i + 1]}
    return total


def adam_update(run: RunState, grads: list[torch.Tensor]) -> None:
    """One Adam step on the run's tensors with its own scheduled learning rate (no host sync)."""
    cfg = run.cfg
    lr = learning_rate(run.step / cfg.steps, base_lr=cfg.lr, rampup=cfg.lr_rampup, rampdown=cfg.lr_rampdown)
    b1, b2 = ADAM_BETAS
    t = run.step + 1
    c1, c2 = 1 - b1 ** t, 1 - b2 ** t
    with torch.no_grad():
        for j, (p, g) in enumerate(zip(run.tensors(), grads)):
            if g is None:
                continue
            m, v = run.moments.get(j, (torch.zeros_like(p), torch.zeros_like(p)))
            m.mul_(b1).add_(g, alpha=1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            p.addcdiv_(m, (v / c2).sqrt_().add_(ADAM_EPS), value=-lr / c1)
            run.moments[j] = (m, v)


def adam_step(model: EngineModel, runs: list[RunState], extractor: nn.Module | None) -> None:
    """One optimisation step for compatible runs stacked into one batch."""
    P = torch.cat([r.param for r in runs]).requires_grad_(True)
    n_layers = len(runs[0].noises)
    noises = [torch.cat([r.noises[j] for r in runs]).requires_grad_(True) for j in range(n_layers)]
    total = objective(model, runs, P, noises, extractor,
                      latent_noise=any(r.cfg.initial_noise_factor > 0 for r in runs))
    total.sum().backward()
    for i, r in enumerate(runs):
        grads = [P.grad[i:i + 1]] + [n.grad[i:i + 1] for n in noises]
        adam_update(r, grads)
        if r.noises:
            L.normalize_noises_(r.noises)
        r.step += 1
