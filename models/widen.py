"""Widen a trained StyleGAN2 generator's synthesis channels, or its discriminator's, without changing its output.

Input: a `Generator` (or `Discriminator`) and a larger `channel_base` / `channel_max` (a generator also
`channels_by_res`, single blocks); output: a new network
(same z, w, mapping, `num_ws` and resolution) whose image for any (ws, noise) -- or logit for any image -- equals
the old one up to float rounding, so training can continue from a shipped model at a larger width instead of
restarting. Only growth is allowed.

Why the output is unchanged: each new output channel of a modulated conv gets fresh random weights, but every
layer that reads it gets zero weights from it, so it contributes nothing; zero weights also leave the demodulation
sums unchanged. ToRGB has no demodulation and scales its styles by 1/sqrt(in_channels), so its old weights are
rescaled for the new fan-in. Gradients reach the zero weights (the new channels carry signal), so they learn.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from .stylegan2 import Discriminator, Generator


def block_channels(G: Generator) -> dict[int, int]:
    """{resolution: channels} of a built generator's synthesis blocks (read off the network, not its kwargs)."""
    return {block.resolution: block.conv1.weight.shape[0] for block in G.synthesis.blocks()}


def _set_width(kwargs: dict, channel_base: int | None, channel_max: int | None) -> None:
    for key, value in (("channel_base", channel_base), ("channel_max", channel_max)):
        if value is not None:
            kwargs[key] = int(value)


def widened_kwargs(g_kwargs: dict, *, channel_base: int | None = None, channel_max: int | None = None,
                   channels_by_res: dict[int, int] | None = None) -> dict:
    """A copy of `g_kwargs` with the given synthesis width options replaced (the others left as they were);
    `channels_by_res` ({resolution: channels}) is merged into any the model already has, keyed by string as JSON
    keeps it."""
    new = copy.deepcopy(g_kwargs)
    syn = new.setdefault("synthesis_kwargs", {})
    _set_width(syn, channel_base, channel_max)
    if channels_by_res:
        merged = {str(int(r)): int(c) for r, c in (syn.get("channels_by_res") or {}).items()}
        merged.update({str(int(r)): int(c) for r, c in channels_by_res.items()})
        syn["channels_by_res"] = merged
    return new


def _refuse_shrinking(before: dict[int, int], after: dict[int, int]) -> None:
    narrower = {r: (before[r], after[r]) for r in before if after[r] < before[r]}
    if narrower:
        raise ValueError("widening cannot remove channels; these resolutions would shrink (old, new): "
                         + ", ".join(f"{r} px {o}->{n}" for r, (o, n) in sorted(narrower.items())))


def _grow_into(old_net: torch.nn.Module, wide: torch.nn.Module, what: str,
               grow: Callable[[str, torch.Tensor, torch.Tensor, tuple[slice, ...]], None]) -> None:
    """Load `old_net`'s tensors into `wide`: equal shapes copied, larger ones filled by `grow(name, old, new, corner)`."""
    old_state, new_state = old_net.state_dict(), wide.state_dict()
    missing = sorted(set(new_state) ^ set(old_state))
    if missing:
        raise ValueError(f"{what} layouts differ beyond width: {missing[:5]}")
    for name, new in new_state.items():
        old = old_state[name].to(new.dtype)
        if old.shape == new.shape:
            new.copy_(old)
            continue
        if old.ndim != new.ndim or any(o > n for o, n in zip(old.shape, new.shape)):
            raise ValueError(f"{name}: cannot widen {list(old.shape)} to {list(new.shape)}")
        grow(name, old, new, tuple(slice(0, s) for s in old.shape))
    wide.load_state_dict(new_state)


def _grow_generator_tensor(name: str, old: torch.Tensor, new: torch.Tensor, corner: tuple[slice, ...]) -> None:
    if name.endswith("torgb.weight"):
        # weight [out, in, 1, 1]; styles are scaled by 1/sqrt(in), so the kept weights make up the new fan-in.
        new.zero_()
        new[corner] = old * math.sqrt(new.shape[1] / old.shape[1])
    elif name.endswith((".conv0.weight", ".conv1.weight")):
        # weight [out, in, k, k]: old outputs must not read the new inputs; new outputs keep their random init.
        new[: old.shape[0], old.shape[1]:] = 0
        new[corner] = old
    else:
        # affine rows, biases, const: the new entries only feed new channels, which nothing reads yet.
        new[corner] = old


@torch.no_grad()
def widen_generator(G: Generator, g_kwargs: dict, *, channel_base: int | None = None,
                    channel_max: int | None = None, channels_by_res: dict[int, int] | None = None,
                    seed: int = 0) -> tuple[Generator, dict]:
    """(wider generator, its kwargs); `g_kwargs` are the ones `G` was built from. New weights draw from `seed`."""
    new_kwargs = widened_kwargs(g_kwargs, channel_base=channel_base, channel_max=channel_max,
                                channels_by_res=channels_by_res)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = Generator(**new_kwargs)
    _refuse_shrinking(block_channels(G), block_channels(wide))
    _grow_into(G, wide, "generator", _grow_generator_tensor)
    return wide.to(next(G.parameters()).device), new_kwargs


def discriminator_channels(D: Discriminator) -> dict[int, int]:
    """{resolution: channels} a built discriminator works at (each block's input width; 4: the 4x4 head's)."""
    chans = {res: getattr(D, f"b{res}").conv0.weight.shape[0] for res in D.block_resolutions}
    chans[4] = D.b4.conv.weight.shape[0]
    return chans


def _grow_discriminator_tensor(name: str, old: torch.Tensor, new: torch.Tensor, corner: tuple[slice, ...]) -> None:
    if old.ndim == 4:  # conv weight [out, in, k, k]
        new[: old.shape[0], old.shape[1]:] = 0
        new[corner] = old * math.sqrt(new.shape[1] / old.shape[1])
    else:  # biases: new entries feed only new channels
        new[corner] = old


@torch.no_grad()
def widen_discriminator(D: Discriminator, d_kwargs: dict, *, channel_base: int | None = None,
                        channel_max: int | None = None, seed: int = 0) -> tuple[Discriminator, dict]:
    """(wider discriminator, its kwargs); `d_kwargs` are the ones `D` was built from. New weights draw from `seed`.

    A wider D costs training time and, where D's blocks are the perceptual network (the bundled models' default),
    inversion time too, though less than a wider G: doubling face64's D took a step's D-feature pass from 26 to
    60 ms against G's 36 (one thread). Every conv's kept weights are rescaled for the new fan-in (equalised lr
    divides by sqrt(fan-in)) and read nothing new; new output channels keep their random init and are read by
    nothing yet. The 4x4 head must keep its width: its minibatch-stddev feature averages over channels, so new
    channels there would change the logit."""
    new_kwargs = copy.deepcopy(d_kwargs)
    _set_width(new_kwargs, channel_base, channel_max)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wide = Discriminator(**new_kwargs)
    before, after = discriminator_channels(D), discriminator_channels(wide)
    _refuse_shrinking(before, after)
    if after[4] != before[4]:
        raise ValueError(f"the 4x4 head would grow {before[4]}->{after[4]} channels, which changes its "
                         "minibatch-stddev feature; keep channel_max at most the head's width")
    _grow_into(D, wide, "discriminator", _grow_discriminator_tensor)
    return wide.to(next(D.parameters()).device), new_kwargs
