"""Write network pickles laid out like the official StyleGAN2-ADA / StyleGAN3-repo ones, from our own networks.

The official training code pickles `{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'}` with plain
`pickle.dump`; every network is a `torch_utils.persistence` object that pickles as
`_reconstruct_persistent_obj(meta)` with `meta = dict(type='class', version, module_src, class_name, state)`,
`state` being the nn.Module `__dict__` (`_parameters`, `_buffers`, `_modules` of child records, ...) plus the
constructor arguments in `_init_args` / `_init_kwargs`. Settings live in `dnnlib.util.EasyDict`s.

`write_official_pickle` reproduces that byte structure without the official code: stand-ins for
`torch_utils.persistence._reconstruct_persistent_obj` and `dnnlib.util.EasyDict` are put in `sys.modules` only
while pickling (pickle needs to find them by name) and removed again afterwards, so a loader that imports
those modules (or runs `module_src`, which raises) is caught by the tests.
"""
from __future__ import annotations

import copy
import pickle
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

MODULE_SRC = "raise RuntimeError('must never run')"
FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
LAYOUT_PREFIX = {"ada": "training.networks", "sg3": "training.networks_stylegan2"}


def _reconstruct_persistent_obj(meta):  # pragma: no cover - only ever referenced by name inside pickles
    raise RuntimeError("the stand-in torch_utils.persistence must never be called")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


class EasyDict(dict):
    """Stand-in for `dnnlib.util.EasyDict` (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


EasyDict.__module__ = "dnnlib.util"


class PersistentObject:
    """Pickles as the official `torch_utils.persistence` record of one network object."""

    def __init__(self, class_name: str, state: dict, version: int = 4):
        self.meta = dict(type="class", version=version, module_src=MODULE_SRC, class_name=class_name, state=state)

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,)


class Reducer:
    """An object whose pickle calls `func(*args)` on load (for malicious-pickle tests)."""

    def __init__(self, func, args: tuple):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --------------------------------------------------------------------------------------------- constructor args


def _channels_of(blocks: Mapping[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) reproducing `channels[res] = min(channel_base // res, channel_max)`."""
    channel_max = max(blocks.values())
    top = max(blocks)
    return blocks[top] * top, channel_max


def generator_init_kwargs(G: nn.Module, config=None, *, layout: str = "ada") -> EasyDict:
    """Official Generator constructor kwargs (ADA nests synthesis_kwargs, the SG3 repo flattens them)."""
    if config is not None:
        g = copy.deepcopy(config.g_kwargs)
        mapping = dict(g.get("mapping_kwargs") or {})
        synthesis = dict(g.get("synthesis_kwargs") or {})
        top = {k: g[k] for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")}
    else:
        top = dict(z_dim=G.z_dim, c_dim=G.c_dim, w_dim=G.w_dim, img_resolution=G.img_resolution,
                   img_channels=G.img_channels)
        mapping = dict(num_layers=G.mapping.num_layers)
        base, cmax = _channels_of({b.resolution: b.conv1.weight.shape[0] for b in G.synthesis.blocks()})
        synthesis = dict(channel_base=base, channel_max=cmax)
    synthesis.setdefault("num_fp16_res", 0)
    synthesis.setdefault("conv_clamp", None)
    if layout == "ada":
        return EasyDict(**top, mapping_kwargs=EasyDict(mapping), synthesis_kwargs=EasyDict(synthesis))
    if layout == "sg3":
        return EasyDict(**top, mapping_kwargs=EasyDict(mapping), **synthesis, fused_modconv_default="inference_only")
    raise ValueError(f"unknown layout {layout!r}")


def discriminator_init_kwargs(D: nn.Module, config=None, *, layout: str = "ada") -> EasyDict:
    if config is not None and config.d_kwargs is not None:
        d = copy.deepcopy(config.d_kwargs)
    else:
        channels = {res: getattr(D, f"b{res}").conv0.weight.shape[0] for res in D.block_resolutions}
        channels[4] = D.b4.conv.weight.shape[0]
        base, cmax = _channels_of(channels)
        d = dict(c_dim=D.c_dim, img_resolution=D.img_resolution, img_channels=D.img_channels,
                 channel_base=base, channel_max=cmax,
                 epilogue_kwargs=dict(mbstd_group_size=D.b4.mbstd.group_size))
    out = EasyDict(c_dim=d.pop("c_dim", 0), img_resolution=d.pop("img_resolution"),
                   img_channels=d.pop("img_channels", 3), architecture=d.pop("architecture", "resnet"),
                   channel_base=d.pop("channel_base"), channel_max=d.pop("channel_max"),
                   num_fp16_res=d.pop("num_fp16_res", 0), conv_clamp=d.pop("conv_clamp", None),
                   cmap_dim=d.pop("cmap_dim", None),
                   block_kwargs=EasyDict(d.pop("block_kwargs", None) or {}),
                   mapping_kwargs=EasyDict(d.pop("mapping_kwargs", None) or {}),
                   epilogue_kwargs=EasyDict(d.pop("epilogue_kwargs", None) or {}))
    out.epilogue_kwargs.setdefault("mbstd_group_size", 4)
    if layout == "sg3":
        out.block_kwargs.setdefault("freeze_layers", 0)
    if d:
        raise ValueError(f"unhandled discriminator kwargs {sorted(d)}")
    return out


# --------------------------------------------------------------------------------------------- module records


def _plain_attributes(module: nn.Module) -> dict:
    """Public plain attributes of the module (z_dim, resolution, weight_gain, ...), floats as numpy scalars
    the way the official code computes them (`np.sqrt`)."""
    out = {}
    for k, v in vars(module).items():
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, float):
            out[k] = np.float64(v)
        elif isinstance(v, (bool, int, str, type(None))) or (isinstance(v, list) and all(isinstance(i, int) for i in v)):
            out[k] = v
    return out


def module_record(module: nn.Module, *, prefix: str, init_kwargs: EasyDict | None = None,
                  overrides: Mapping[str, torch.Tensor | None] | None = None, path: str = "") -> PersistentObject:
    """Persistence record mirroring `module`'s `__dict__`, recursively; `overrides` (dotted names, relative to
    the root) replace a parameter/buffer tensor, or drop it when the value is None."""
    overrides = overrides or {}

    def tensor_entry(name: str, t: torch.Tensor, *, parameter: bool):
        key = path + name
        if key in overrides:
            t = overrides[key]
            if t is None:
                return None
        t = t.detach().clone()
        return nn.Parameter(t, requires_grad=False) if parameter else t

    params = OrderedDict()
    for name, p in module._parameters.items():
        entry = tensor_entry(name, p, parameter=True) if p is not None else None
        if entry is not None or p is None:
            params[name] = entry
    buffers = OrderedDict()
    for name, b in module._buffers.items():
        entry = tensor_entry(name, b, parameter=False) if b is not None else None
        if entry is not None or b is None:
            buffers[name] = entry
    children = OrderedDict((name, module_record(child, prefix=prefix, overrides=overrides, path=f"{path}{name}.")
                            if child is not None else None) for name, child in module._modules.items())
    state = {
        "training": False,
        "_parameters": params,
        "_buffers": buffers,
        "_non_persistent_buffers_set": set(module._non_persistent_buffers_set),
        "_backward_pre_hooks": OrderedDict(),
        "_backward_hooks": OrderedDict(),
        "_is_full_backward_hook": None,
        "_forward_hooks": OrderedDict(),
        "_forward_hooks_with_kwargs": OrderedDict(),
        "_forward_pre_hooks": OrderedDict(),
        "_state_dict_hooks": OrderedDict(),
        "_load_state_dict_pre_hooks": OrderedDict(),
        "_load_state_dict_post_hooks": OrderedDict(),
        "_modules": children,
        **_plain_attributes(module),
        "_init_args": (),
        "_init_kwargs": init_kwargs if init_kwargs is not None else EasyDict(),
    }
    return PersistentObject(f"{prefix}.{type(module).__name__}", state)


def _augment_pipe_record() -> PersistentObject:
    state = {
        "training": False,
        "_parameters": OrderedDict(),
        "_buffers": OrderedDict(p=torch.zeros([]), Hz_geom=torch.randn(12)),
        "_non_persistent_buffers_set": set(),
        "_modules": OrderedDict(),
        "xflip": np.float64(1.0), "rotate90": 1, "xint_max": np.float32(0.125),
        "imgfilter_bands": np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32),
        "lumaflip_axis": np.array([[0.5, 0.5], [0.5, 0.5]]),
        "_init_args": (),
        "_init_kwargs": EasyDict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1),
    }
    return PersistentObject("training.augment.AugmentPipe", state)


def _install_fake_modules() -> dict[str, Any]:
    saved = {name: sys.modules.get(name) for name in FAKE_MODULES}
    torch_utils, persistence = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dnnlib, util = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils.persistence = persistence
    util.EasyDict = EasyDict
    dnnlib.util = util
    sys.modules.update({"torch_utils": torch_utils, "torch_utils.persistence": persistence,
                        "dnnlib": dnnlib, "dnnlib.util": util})
    return saved


def _remove_fake_modules(saved: dict[str, Any]) -> None:
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


def write_official_pickle(path: str | Path, G: nn.Module, D: nn.Module | None, *, layout: str = "ada",
                          extra: Mapping[str, Any] | None = None, config=None, protocol: int = 4,
                          g_ema_overrides: Mapping[str, torch.Tensor | None] | None = None,
                          g_ema_state_extra: Mapping[str, Any] | None = None) -> Path:
    """Pickle `{G, D, G_ema, augment_pipe, training_set_kwargs}` (+ `extra`) like the official training loop.

    `G_ema` holds `G`'s weights; the training-time `G` record gets perturbed weights, so a loader reading the
    wrong network is caught. `config` (a ModelConfig) supplies the constructor kwargs; without it they are
    read off the networks. `g_ema_overrides` replaces (tensor) or drops (None) `G_ema` tensors by dotted name;
    `g_ema_state_extra` adds raw entries to the `G_ema` record's state.
    """
    if layout not in LAYOUT_PREFIX:
        raise ValueError(f"layout must be one of {sorted(LAYOUT_PREFIX)}")
    prefix = LAYOUT_PREFIX[layout]
    path = Path(path)
    saved = _install_fake_modules()
    try:
        g_kwargs = generator_init_kwargs(G, config, layout=layout)
        g_ema = module_record(G, prefix=prefix, init_kwargs=g_kwargs, overrides=g_ema_overrides)
        if g_ema_state_extra:
            g_ema.meta["state"].update(g_ema_state_extra)
        perturbed = {name: t + 0.25 if t.is_floating_point() else t for name, t in G.state_dict().items()}
        g_train = module_record(G, prefix=prefix, init_kwargs=copy.deepcopy(g_kwargs), overrides=perturbed)
        data: dict[str, Any] = {"G": g_train}
        if D is not None:
            data["D"] = module_record(D, prefix=prefix, init_kwargs=discriminator_init_kwargs(D, config, layout=layout))
        data["G_ema"] = g_ema
        data["augment_pipe"] = _augment_pipe_record()
        data["training_set_kwargs"] = EasyDict(class_name="training.dataset.ImageFolderDataset",
                                               path="~/datasets/tiny.zip", use_labels=False, max_size=1000,
                                               xflip=False, resolution=int(G.img_resolution),
                                               random_seed=0)
        data.update(extra or {})
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
    finally:
        _remove_fake_modules(saved)
    return path


def rewrite_numpy_names_as_numpy1(path: str | Path) -> None:
    """Rename `numpy._core` references to numpy 1.x's `numpy.core` in a protocol <= 3 pickle (text GLOBALs)."""
    p = Path(path)
    data = p.read_bytes()
    old, new = b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n"
    if old not in data:
        raise ValueError("no numpy._core GLOBAL opcodes found (protocol >= 4 pickles cannot be rewritten)")
    p.write_bytes(data.replace(old, new))

