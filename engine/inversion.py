"""The inversion loop: optimise a latent (z, w or w+, optionally noise) so that op(G(latent)) matches a target.

`run(model, request)` is a generator of `Frame`s (see engine/types.py for every shape and polarity).
Closing the generator (`.close()`, or dropping it) stops the loop at the current step; a `finally`
releases the optimiser state and tensors. No host synchronisation happens between frames. With
`config.tuning.steps > 0` the latent search is followed by pivotal tuning (engine/tuning.py), whose frames
have `stage='tuning'`; the step counter runs through both stages.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Iterator

import numpy as np
import torch

from . import losses as L
from .metrics import psnr, ssim
from .model import EngineModel
from .perceptual import build_extractor, requested_kind
from .runstate import (RunState, adam_step, autocast_for, latent_to_ws, new_run, objective, to_tensor, to_uint8,
                       validate_request)
from .tuning import tune
from .types import EngineError, Frame, InversionRequest

__all__ = ["frame_quality", "make_frame", "run", "to_tensor", "to_uint8", "validate_request"]
log = logging.getLogger(__name__)


def make_frame(model: EngineModel, r: RunState, *, final: bool) -> Frame:
    """Snapshot of a run (the only place that synchronises with the device). `final`: the latent search's
    last step (the run's last frame, `done`, unless a tuning stage follows)."""
    losses = {k: float(v) for k, v in r.last["terms"].items()}
    losses["total"] = float(r.last["total"])
    img, degraded = r.last["img"], r.last["degraded"]
    if final:
        with torch.inference_mode(), autocast_for(r.cfg, model.device):
            img = model.G.synthesis(latent_to_ws(model.G, r.param, r.cfg.latent_space), noise_mode="const",
                                    noises=[n.detach() for n in r.noises] or None)
            degraded = r.chain(img)
    if not all(np.isfinite(v) for v in losses.values()):
        raise EngineError("the optimisation diverged (non-finite loss): lower the learning rate")
    seen = to_uint8(degraded)
    quality = frame_quality(seen, r)
    return Frame(step=r.step, total=r.cfg.total_steps, image=to_uint8(img), degraded=seen, losses=losses,
                 elapsed=time.perf_counter() - r.t0, latent=r.param.detach()[0].float().cpu().clone(),
                 latent_space=r.cfg.latent_space,
                 noises=tuple(n.detach()[0].cpu().clone() for n in r.noises) or None,
                 messages=r.messages, done=final and r.cfg.tuning.steps == 0, **quality)


def frame_quality(seen: np.ndarray, r: RunState) -> dict[str, float]:
    """PSNR and SSIM of what the loss compares: `seen` (operator(G), uint8) against the run's projected target
    over its known pixels (Frame's psnr/ssim fields)."""
    target = to_uint8(r.target)
    known = r.known[0, 0].detach().cpu().numpy() > 0.5
    return {"psnr": psnr(seen, target, known), "ssim": ssim(seen, target, known)}


def frame_due(r: RunState) -> bool:
    return r.step == r.cfg.steps or r.step % r.cfg.preview_every == 0


def _lbfgs_step(model: EngineModel, r: RunState, opt: torch.optim.Optimizer, extractor) -> None:
    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = objective(model, [r], r.param, r.noises, extractor, latent_noise=False).sum()
        loss.backward()
        return loss
    opt.step(closure)
    if r.noises:
        L.normalize_noises_(r.noises)
    r.step += 1


def run(model: EngineModel, request: InversionRequest, *, stop: threading.Event | None = None) -> Iterator[Frame]:
    """Optimise and yield frames every `preview_every` steps plus the final one (`done=True`).

    `stop` (optional, set from any thread) ends the run before its next step, without a final frame."""
    cfg = request.config
    validate_request(model, request)
    extractor, kind, messages = build_extractor(requested_kind(cfg),
                                                D=model.D, device=model.device)
    torch.manual_seed(cfg.seed)
    r = new_run(model, request, extractor, messages, kind)
    opt = None
    if cfg.optimizer == "lbfgs":
        for t in r.tensors():
            t.requires_grad_(True)
        opt = torch.optim.LBFGS(r.tensors(), lr=cfg.lr, max_iter=1, history_size=10,
                                line_search_fn="strong_wolfe")
    try:
        while r.step < cfg.steps and not (stop is not None and stop.is_set()):
            if opt is None:
                adam_step(model, [r], extractor)
            else:
                _lbfgs_step(model, r, opt, extractor)
            if frame_due(r):
                yield make_frame(model, r, final=r.step == cfg.steps)
        if r.step == cfg.steps and not (stop is not None and stop.is_set()):
            opt = None
            r.moments.clear()  # the latent's Adam state is not needed while the weights are tuned
            yield from tune(model, r, stop=stop)
    finally:
        # Runs on normal completion, on error and when the consumer closes the generator (Stop button).
        r.moments.clear()
        r.last.clear()
        log.debug("inversion finished or cancelled after %.2fs", time.perf_counter() - r.t0)
