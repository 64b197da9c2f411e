"""Pivotal tuning (PTI, Roich et al. 2022): after the latent search, fine-tune a per-run copy of the synthesis
weights so that op(G'(pivot)) matches the target, with PTI's locality regulariser; the shared model never changes.

`tune(model, r, stop=...)` continues a finished latent search (`RunState` r: its pivot latent, operator chain,
known mask, loss weights and perceptual features) and yields `Frame`s with `stage='tuning'` whose step counter
runs on from the latent stage's (`config.steps + 1 .. config.total_steps`). The copy lives only inside the
generator's frame: it is freed when the stage ends, errors or is stopped (`stop` set, or the iterator closed).
The final frame carries the fp16 weight deltas (`weight_deltas`); `tuned_synthesis(G, deltas)` rebuilds the copy.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from typing import Iterator

import torch
from torch import nn

from . import losses as L
from .model import EngineModel
from .perceptual import feature_distance
from .runstate import RunState, autocast_for, latent_to_ws, to_uint8
from .types import EngineError, Frame

__all__ = ["TUNABLE_TASKS", "locality_ws", "tune", "tuned_synthesis", "weight_deltas"]
log = logging.getLogger(__name__)

TUNABLE_TASKS = ("reconstruct", "inpaint", "colorize", "deblur", "superres")
"""Tasks where tuning makes sense: a photo constrains every pixel it knows. Scribbles are sparse hints, and
tuning would make the generator draw the strokes instead of a picture that fits them."""


def locality_ws(pivot_ws: torch.Tensor, w_samples: torch.Tensor, *, distance: float) -> torch.Tensor:
    """PTI's regulariser codes: each sample's ws `[K, num_ws, w_dim]` moved to `distance` from the pivot `[1,
    num_ws, w_dim]` along its direction, per layer row, so `distance` is a distance between single w's."""
    d = w_samples - pivot_ws
    norm = d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return pivot_ws + distance * d / norm


def weight_deltas(tuned: nn.Module, original: nn.Module) -> dict[str, torch.Tensor]:
    """(tuned - original) floating parameters and buffers by name, as fp16 CPU tensors (small: 2 bytes each)."""
    orig = dict(original.state_dict())
    out = {}
    for name, t in tuned.state_dict().items():
        if t.is_floating_point() and not torch.equal(t, orig[name]):
            out[name] = (t.detach().float() - orig[name].float()).to(torch.float16).cpu().contiguous()
    return out


def tuned_synthesis(G: nn.Module, deltas: dict[str, torch.Tensor]) -> nn.Module:
    """A frozen copy of `G.synthesis` with saved deltas added (the original stays untouched)."""
    synth = copy.deepcopy(G.synthesis)
    state = synth.state_dict()
    unknown = sorted(set(deltas) - set(state))
    if unknown:
        raise EngineError(f"the saved tuning does not fit this generator (unknown weights {unknown[:3]})")
    with torch.no_grad():
        for name, d in deltas.items():
            if tuple(d.shape) != tuple(state[name].shape):
                raise EngineError(f"the saved tuning does not fit this generator ({name}: {list(d.shape)} vs "
                                  f"{list(state[name].shape)})")
            state[name].add_(d.to(state[name].device, state[name].dtype))
    return synth.eval().requires_grad_(False)


def _objective(model: EngineModel, synth: nn.Module, r: RunState, pivot_ws: torch.Tensor,
               noises: list[torch.Tensor] | None, gen: torch.Generator, anchor: torch.Tensor | None,
               hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """One tuning step's loss -> (G'(pivot), op(G'(pivot)), unweighted terms, weighted total `[1]`).

    Terms: the first stage's image terms (pixel + perceptual) on known pixels; 'hole': drift of the unknown
    pixels from the frozen G(pivot); 'locality': PTI's regulariser, the tuned generator's drift from the frozen
    one (L2 + perceptual) at random codes moved `alpha * w_std` from the pivot towards mapped random z's. The pivot
    and the locality codes go through the tuned copy (and the feature network) as one batch."""
    cfg, tc, G, dev, w = r.cfg, r.cfg.tuning, model.G, model.device, r.weights
    loc_ws = before = before_feats = None
    if tc.locality > 0:
        z = torch.randn(tc.locality_samples, G.z_dim, generator=gen, device=dev)
        with torch.no_grad():
            loc_ws = locality_ws(pivot_ws, G.mapping(z), distance=tc.alpha * model.w_std)
            with autocast_for(cfg, dev):
                before = G.synthesis(loc_ws, noise_mode="const").float()
                before_feats = r.extractor(before) if r.extractor is not None else None
    with autocast_for(cfg, dev):
        if loc_ws is not None and noises is None:
            out = synth(torch.cat([pivot_ws, loc_ws]), noise_mode="const")
            img, after = out[:1], out[1:]
        else:  # per-run noise maps are for the pivot only
            img = synth(pivot_ws, noise_mode="const", noises=noises)
            after = synth(loc_ws, noise_mode="const") if loc_ws is not None else None
        degraded = r.chain(img)
        perceptual = w.perceptual > 0 and r.extractor is not None and r.target_feats is not None
        feats = after_feats = None
        if perceptual and before_feats is not None:
            both = r.extractor(torch.cat([degraded * r.known, after]))
            feats, after_feats = [f[:1] for f in both], [f[1:] for f in both]
        elif perceptual:
            feats = r.extractor(degraded * r.known)
        elif before_feats is not None:
            after_feats = r.extractor(after)
    terms: dict[str, torch.Tensor] = {}
    if w.l2 > 0:
        terms["l2"] = L.masked_l2(degraded.float(), r.target, r.known)
    if w.l1 > 0:
        terms["l1"] = L.masked_l1(degraded.float(), r.target, r.known)
    if feats is not None:
        terms["perceptual"] = feature_distance(feats, r.target_feats, r.known)
    if not terms:
        raise EngineError("tuning needs an image loss: set the L1, L2 or perceptual weight above 0")
    total = sum(getattr(w, k) * v for k, v in terms.items())
    if anchor is not None:
        terms["hole"] = L.masked_l2(img.float(), anchor, hole)
        total = total + tc.hole * terms["hole"]
    if after is not None:
        loc = (after.float() - before).square().mean()
        if after_feats is not None:
            loc = loc + feature_distance(after_feats, before_feats).mean()
        terms["locality"] = loc.reshape(1)
        total = total + tc.locality * terms["locality"]
    return img, degraded, terms, total


def _frame(r: RunState, img: torch.Tensor, degraded: torch.Tensor, terms: dict[str, torch.Tensor],
           total: torch.Tensor, *, done: bool, deltas: dict[str, torch.Tensor] | None = None) -> Frame:
    losses = {k: float(v.detach().sum()) for k, v in terms.items()}
    losses["total"] = float(total.sum())
    if not all(v == v and abs(v) != float("inf") for v in losses.values()):
        raise EngineError("the tuning diverged (non-finite loss): lower the tuning learning rate")
    from .inversion import frame_quality  # engine.inversion imports this module
    seen = to_uint8(degraded)
    return Frame(step=r.step, total=r.cfg.total_steps, image=to_uint8(img), degraded=seen, **frame_quality(seen, r),
                 losses=losses, elapsed=time.perf_counter() - r.t0, latent=r.param.detach()[0].float().cpu().clone(),
                 latent_space=r.cfg.latent_space, noises=tuple(n.detach()[0].cpu().clone() for n in r.noises) or None,
                 messages=r.messages, done=done, stage="tuning", weight_deltas=deltas)


def tune(model: EngineModel, r: RunState, *, stop: threading.Event | None = None) -> Iterator[Frame]:
    """Pivotal tuning of run `r` after its latent search; yields frames every `preview_every` steps and a final
    one (`done=True`, with `weight_deltas`). `stop` ends it before the next step, without a final frame."""
    cfg, tc, G, dev = r.cfg, r.cfg.tuning, model.G, model.device
    if tc.steps <= 0:
        return
    # The copy is this run's own: the shared G (and its synthesis) are only ever read.
    synth = copy.deepcopy(G.synthesis).eval().requires_grad_(True)
    opt = torch.optim.Adam([p for p in synth.parameters() if p.is_floating_point()], lr=tc.lr)
    pivot_ws = latent_to_ws(G, r.param.detach(), cfg.latent_space).detach()
    noises = [n.detach() for n in r.noises] or None
    gen = torch.Generator(device=dev).manual_seed(cfg.seed + 1)
    hole = 1 - r.known
    anchor = None
    if tc.hole > 0 and bool(hole.any()):
        with torch.no_grad(), autocast_for(cfg, dev):
            anchor = G.synthesis(pivot_ws, noise_mode="const", noises=noises).float()
    end = cfg.total_steps
    t_stage = time.perf_counter()
    try:
        while r.step < end and not (stop is not None and stop.is_set()):
            opt.zero_grad(set_to_none=True)
            img, degraded, terms, total = _objective(model, synth, r, pivot_ws, noises, gen, anchor, hole)
            total.sum().backward()
            opt.step()
            r.step += 1
            if r.step == end:
                with torch.inference_mode(), autocast_for(cfg, dev):
                    img = synth(pivot_ws, noise_mode="const", noises=noises)
                    degraded = r.chain(img)
                yield _frame(r, img, degraded, terms, total.detach(), done=True, deltas=weight_deltas(synth, G.synthesis))
            elif r.step % cfg.preview_every == 0:
                yield _frame(r, img.detach(), degraded.detach(), terms, total.detach(), done=False)
    finally:
        # Runs on completion, error and Stop/close: the copy and its Adam moments go with this frame's locals.
        done_steps = r.step - cfg.steps
        opt.state.clear()
        del opt, synth, anchor
        log.debug("tuning: %d steps in %.2fs", done_steps, time.perf_counter() - t_stage)
