"""Strict state loading: every parameter and buffer found with the right shape, nothing unexpected.

Input: a module and a flat `{dotted_name: tensor}` dict. Raises `CheckpointError` naming each problem.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not match the network it should fill."""


def module_state_names(module: nn.Module) -> dict[str, torch.Tensor]:
    """All parameters and persistent buffers by dotted name."""
    return dict(module.state_dict(keep_vars=True))


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], *, what: str = "network",
                ignore: Iterable[str] = ()) -> None:
    """Copy `state` into `module`, or raise listing every missing, unexpected and mis-shaped entry."""
    expected = module_state_names(module)
    ignore = set(ignore)
    missing = sorted(k for k in expected if k not in state)
    unexpected = sorted(k for k in state if k not in expected and k not in ignore)
    wrong = sorted(f"{k}: file {list(state[k].shape)} vs network {list(expected[k].shape)}"
                   for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape))
    problems = []
    if missing:
        problems.append(f"missing {len(missing)}: {', '.join(missing[:20])}" + (" ..." if len(missing) > 20 else ""))
    if unexpected:
        problems.append(f"unexpected {len(unexpected)}: {', '.join(unexpected[:20])}"
                        + (" ..." if len(unexpected) > 20 else ""))
    if wrong:
        problems.append(f"wrong shape {len(wrong)}: {'; '.join(wrong[:20])}")
    if problems:
        raise CheckpointError(f"{what}: checkpoint does not match the architecture — " + " | ".join(problems))
    with torch.no_grad():
        for k, t in expected.items():
            t.copy_(state[k].to(t.dtype))
