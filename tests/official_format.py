"""Write network pickles exactly as the official StyleGAN2-ADA / stylegan3-repo training loops do, from our networks.

What the official code writes (NVlabs `torch_utils/persistence.py`, `training/training_loop.py`):
- `pickle.dump(snapshot_data, f)` with the running Python's default protocol (4 on Python 3.8+, 3 on the
  Python 3.7 the 2021 files came from); `snapshot_data` is, in the ADA repo,
  `{training_set_kwargs, G, D, G_ema, augment_pipe}` (in the stylegan3 repo `training_set_kwargs` comes last),
  `training_set_kwargs` being a plain `dict` copy of an EasyDict.
- every network object pickles through `persistent_class.__reduce__` as
  `_reconstruct_persistent_obj(dict(type='class', version=6, module_src=<source of the defining module>,
  class_name=<BARE class name>, state=<the module's __dict__>))`; submodules in `state['_modules']` are
  records too. `state` ends with `_init_args` (a tuple) and `_init_kwargs` (a plain dict: the constructor was
  called with `**kwargs`) whose nested option groups are `dnnlib.util.EasyDict`s. Networks are `.eval()`
  and `requires_grad_(False)` copies, gains computed with `np.sqrt` are numpy float64 scalars.

The defining module's source is not ours to ship, so `module_src` is a stand-in with the definitions that tell
the three files apart (class names, `__init__` signatures) whose first statement raises: a loader that
runs it fails. Stand-ins for `torch_utils.persistence._reconstruct_persistent_obj` and
`dnnlib.util.EasyDict` are put in `sys.modules` only while pickling (pickle finds globals by name).
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

from tests.official_calls import Call, discriminator_calls, generator_calls

FAKE_MODULES = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
LAYOUTS = ("ada", "sg3")
PERSISTENCE_VERSION = 6  # `_version` in both repositories' torch_utils/persistence.py

# --------------------------------------------------------------------------------------------- module_src stand-ins

_COMMON = {
    "FullyConnectedLayer": "in_features, out_features, bias=True, activation='linear', lr_multiplier=1, bias_init=0",
    "Conv2dLayer": "in_channels, out_channels, kernel_size, bias=True, activation='linear', up=1, down=1, "
                   "resample_filter=[1,3,3,1], conv_clamp=None, channels_last=False, trainable=True",
    "MappingNetwork": "z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None, "
                      "activation='lrelu', lr_multiplier=0.01, w_avg_beta={beta}",
    "SynthesisLayer": "in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True, "
                      "activation='lrelu', resample_filter=[1,3,3,1], conv_clamp=None, channels_last=False",
    "ToRGBLayer": "in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False",
    "DiscriminatorBlock": "in_channels, tmp_channels, out_channels, resolution, img_channels, first_layer_idx, "
                          "architecture='resnet', activation='lrelu', resample_filter=[1,3,3,1], conv_clamp=None, "
                          "use_fp16=False, fp16_channels_last=False, freeze_layers=0",
    "MinibatchStdLayer": "group_size, num_channels=1",
    "DiscriminatorEpilogue": "in_channels, cmap_dim, resolution, img_channels, architecture='resnet', "
                             "mbstd_group_size=4, mbstd_num_channels=1, activation='lrelu', conv_clamp=None",
}
_SIGNATURES = {
    "ada": {**_COMMON,
            "MappingNetwork": _COMMON["MappingNetwork"].format(beta=0.995),
            "SynthesisBlock": "in_channels, out_channels, w_dim, resolution, img_channels, is_last, "
                              "architecture='skip', resample_filter=[1,3,3,1], conv_clamp=None, use_fp16=False, "
                              "fp16_channels_last=False, **layer_kwargs",
            "SynthesisNetwork": "w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, "
                                "num_fp16_res=0, **block_kwargs",
            "Generator": "z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, synthesis_kwargs={}",
            "Discriminator": "c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768, "
                             "channel_max=512, num_fp16_res=0, conv_clamp=None, cmap_dim=None, block_kwargs={}, "
                             "mapping_kwargs={}, epilogue_kwargs={}"},
    "sg3": {**_COMMON,
            "MappingNetwork": _COMMON["MappingNetwork"].format(beta=0.998),
            "SynthesisBlock": "in_channels, out_channels, w_dim, resolution, img_channels, is_last, "
                              "architecture='skip', resample_filter=[1,3,3,1], conv_clamp=256, use_fp16=False, "
                              "fp16_channels_last=False, fused_modconv_default=True, **layer_kwargs",
            "SynthesisNetwork": "w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, "
                                "num_fp16_res=4, **block_kwargs",
            "Generator": "z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs",
            "Discriminator": "c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768, "
                             "channel_max=512, num_fp16_res=4, conv_clamp=256, cmap_dim=None, block_kwargs={}, "
                             "mapping_kwargs={}, epilogue_kwargs={}"},
    "stylegan3": {
        "FullyConnectedLayer": _COMMON["FullyConnectedLayer"],
        "MappingNetwork": "z_dim, c_dim, w_dim, num_ws, num_layers=2, lr_multiplier=0.01, w_avg_beta=0.998",
        "SynthesisInput": "w_dim, channels, size, sampling_rate, bandwidth",
        "SynthesisLayer": "w_dim, is_torgb, is_critically_sampled, use_fp16, in_channels, out_channels, in_size, "
                          "out_size, in_sampling_rate, out_sampling_rate, in_cutoff, out_cutoff, in_half_width, "
                          "out_half_width, conv_kernel=3, filter_size=6, lrelu_upsampling=2, "
                          "use_radial_filters=False, conv_clamp=256, magnitude_ema_beta=0.999",
        "SynthesisNetwork": "w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512, "
                            "num_layers=14, num_critical=2, first_cutoff=2, first_stopband=2**2.1, "
                            "last_stopband_rel=2**0.3, margin_size=10, output_scale=0.25, num_fp16_res=4, "
                            "**layer_kwargs",
        "Generator": "z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs={}, **synthesis_kwargs"},
    "augment": {"AugmentPipe": "xflip=0, rotate90=0, xint=0, xint_max=0.125, scale=0, rotate=0, aniso=0, xfrac=0, "
                               "scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness=0, "
                               "contrast=0, lumaflip=0, hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, "
                               "hue_max=1, saturation_std=1, imgfilter=0, imgfilter_bands=[1,1,1,1], "
                               "imgfilter_std=1, noise=0, cutout=0, noise_std=0.1, cutout_size=0.5"},
}
_FILES = {"ada": "stylegan2-ada-pytorch training/networks.py", "sg3": "stylegan3 training/networks_stylegan2.py",
          "stylegan3": "stylegan3 training/networks_stylegan3.py", "augment": "training/augment.py"}


def stand_in_source(kind: str) -> str:
    """Module source standing in for one official file: its classes and `__init__` signatures; raises if run."""
    lines = [f'"""Stand-in for {_FILES[kind]} (test fixture)."""',
             "raise RuntimeError('module_src must never be executed')",
             "import numpy as np", "import torch", "from torch_utils import persistence", ""]
    for name, signature in _SIGNATURES[kind].items():
        lines += ["@persistence.persistent_class", f"class {name}(torch.nn.Module):",
                  f"    def __init__(self, {signature}):", "        super().__init__()", ""]
    return "\n".join(lines)


MODULE_SRC = {kind: stand_in_source(kind) for kind in _SIGNATURES}


# --------------------------------------------------------------------------------------------- pickling stand-ins


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
    """Pickles as the official `persistent_class.__reduce__` does: `(_reconstruct_persistent_obj, (meta,), None)`."""

    def __init__(self, class_name: str, state: dict, *, module_src: str):
        self.meta = dict(type="class", version=PERSISTENCE_VERSION, module_src=module_src, class_name=class_name,
                         state=state)

    def __reduce__(self):
        return _reconstruct_persistent_obj, (self.meta,), None

    def __deepcopy__(self, memo: dict) -> "PersistentObject":
        new = PersistentObject.__new__(PersistentObject)  # not through __reduce__ (that names the stand-in)
        new.meta = copy.deepcopy(self.meta, memo)
        return new


class Reducer:
    """An object whose pickle calls `func(*args)` on load (for malicious-pickle tests)."""

    def __init__(self, func, args: tuple):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


# --------------------------------------------------------------------------------------------- constructor kwargs


def _channels_of(blocks: Mapping[int, int]) -> tuple[int, int]:
    """(channel_base, channel_max) reproducing `channels[res] = min(channel_base // res, channel_max)`."""
    top = max(blocks)
    return blocks[top] * top, max(blocks.values())


def _common_kwargs(net: nn.Module) -> dict:
    # training_loop.py: `common_kwargs = dict(c_dim=..., img_resolution=..., img_channels=...)`, passed last.
    return dict(c_dim=int(net.c_dim), img_resolution=int(net.img_resolution), img_channels=int(net.img_channels))


def generator_init_kwargs(G: nn.Module, config=None, *, layout: str = "ada", numpy_values: bool = False) -> dict:
    """`_init_kwargs` of a Generator built by the official train.py -> training_loop.py for `layout`.

    ADA: `Generator(z_dim, w_dim, mapping_kwargs=EasyDict, synthesis_kwargs=EasyDict(channel_base, channel_max,
    num_fp16_res, conv_clamp), c_dim, img_resolution, img_channels)`; the stylegan3 repo passes the synthesis
    options flat, adds `fused_modconv_default`, and sets num_fp16_res/conv_clamp only when they differ from
    its defaults (4 / 256: its `--fp32` sets 0 / None). `numpy_values` stores numbers as numpy scalars, as
    networks converted by legacy.py can.
    """
    if config is not None:
        g = copy.deepcopy(config.g_kwargs)
        mapping = dict(g.get("mapping_kwargs") or {})
        synthesis = dict(g.get("synthesis_kwargs") or {})
    else:
        mapping = dict(num_layers=G.mapping.num_layers)
        base, cmax = _channels_of({b.resolution: b.conv1.weight.shape[0] for b in G.synthesis.blocks()})
        synthesis = dict(channel_base=base, channel_max=cmax)
    synthesis.setdefault("num_fp16_res", 0)
    synthesis.setdefault("conv_clamp", None)
    if numpy_values:
        synthesis = {k: np.int64(v) if isinstance(v, int) and not isinstance(v, bool) else v
                     for k, v in synthesis.items()}
    head = dict(z_dim=int(G.z_dim), w_dim=int(G.w_dim), mapping_kwargs=EasyDict(mapping))
    if layout == "ada":
        return dict(**head, synthesis_kwargs=EasyDict(synthesis), **_common_kwargs(G))
    if layout == "sg3":
        flat = {k: v for k, v in synthesis.items() if (k, v) not in (("num_fp16_res", 4), ("conv_clamp", 256))}
        return dict(**head, **flat, fused_modconv_default="inference_only", **_common_kwargs(G))
    raise ValueError(f"unknown layout {layout!r}")


def discriminator_init_kwargs(D: nn.Module, config=None, *, layout: str = "ada") -> dict:
    """`_init_kwargs` of the official train.py's Discriminator (block/mapping/epilogue kwargs as EasyDicts)."""
    if config is not None and config.d_kwargs is not None:
        d = copy.deepcopy(config.d_kwargs)
    else:
        channels = {res: getattr(D, f"b{res}").conv0.weight.shape[0] for res in D.block_resolutions}
        channels[4] = D.b4.conv.weight.shape[0]
        base, cmax = _channels_of(channels)
        d = dict(channel_base=base, channel_max=cmax, epilogue_kwargs=dict(mbstd_group_size=D.b4.mbstd.group_size))
    for k in ("c_dim", "img_resolution", "img_channels"):
        d.pop(k, None)
    block = EasyDict(d.pop("block_kwargs", None) or {})
    epilogue = EasyDict(d.pop("epilogue_kwargs", None) or {})
    epilogue.setdefault("mbstd_group_size", 4)
    if layout == "sg3":
        block.setdefault("freeze_layers", 0)  # the stylegan3 repo's --freezed
    out = dict(block_kwargs=block, mapping_kwargs=EasyDict(d.pop("mapping_kwargs", None) or {}),
               epilogue_kwargs=epilogue, channel_base=d.pop("channel_base"), channel_max=d.pop("channel_max"))
    fp16, clamp = d.pop("num_fp16_res", 0), d.pop("conv_clamp", None)
    if layout == "ada" or (fp16, clamp) != (4, 256):
        out.update(num_fp16_res=fp16, conv_clamp=clamp)
    out.update(d)  # anything else our config holds (architecture, cmap_dim) passes through
    return {**out, **_common_kwargs(D)}


# --------------------------------------------------------------------------------------------- records


_TORCH_INTERNALS = frozenset(vars(nn.Module()))


def module_record(module: nn.Module, *, module_src: str, calls: Mapping[str, Call],
                  overrides: Mapping[str, torch.Tensor | None] | None = None, path: str = "") -> PersistentObject:
    """Persistence record of `module`: its `__dict__` as torch keeps it (internals in order), submodules as
    records, then the attributes and constructor arguments the official class has (`calls[path]`, see
    tests/official_calls.py). `overrides` (dotted names from the root) replace a parameter/buffer tensor, or
    drop it when the value is None."""
    overrides = overrides or {}

    def tensors(container: dict, *, parameter: bool) -> dict:
        out = type(container)()  # dict in torch 2.x modules, OrderedDict in the 1.x of the 2021 files
        for name, t in container.items():
            key = path + name
            if key in overrides:
                t = overrides[key]
                if t is None:
                    continue
            if t is not None:
                t = t.detach().clone()
                t = nn.Parameter(t, requires_grad=False) if parameter else t
            out[name] = t
        return out

    call = calls[path.rstrip(".")]
    state: dict[str, Any] = {}
    for key, value in vars(module).items():
        if key == "training":
            state[key] = False
        elif key == "_parameters":
            state[key] = tensors(value, parameter=True)
        elif key == "_buffers":
            state[key] = tensors(value, parameter=False)
        elif key == "_modules":
            state[key] = type(value)(
                (name, module_record(child, module_src=module_src, calls=calls, overrides=overrides,
                                     path=f"{path}{name}.") if child is not None else None)
                for name, child in value.items())
        elif key in _TORCH_INTERNALS:
            state[key] = copy.copy(value)  # torch's (empty) hook dicts, _non_persistent_buffers_set, ...
        # Anything else (our own caches) is not what the official class has; its attributes come from `call`.
    state.update(copy.deepcopy(call.attrs))
    state["_init_args"] = tuple(call.args)
    state["_init_kwargs"] = copy.deepcopy(dict(call.kwargs))
    return PersistentObject(type(module).__name__, state, module_src=module_src)


def _record(class_name: str, *, kind: str, parameters: Mapping[str, torch.Tensor] | None = None,
            buffers: Mapping[str, torch.Tensor] | None = None, modules: Mapping[str, PersistentObject] | None = None,
            attributes: Mapping[str, Any] | None = None, init_kwargs: Mapping | None = None) -> PersistentObject:
    """A record for a module we have no class for (augment pipe, StyleGAN3 layers), `__dict__` like torch's."""
    template = {k: copy.copy(v) for k, v in vars(nn.Module()).items()}
    template.update(training=False,
                    _parameters=type(template["_parameters"])((k, nn.Parameter(v, requires_grad=False))
                                                              for k, v in (parameters or {}).items()),
                    _buffers=type(template["_buffers"])(buffers or {}),
                    _modules=type(template["_modules"])(modules or {}))
    template.update(attributes or {})
    template.update(_init_args=(), _init_kwargs=dict(init_kwargs or {}))
    return PersistentObject(class_name, template, module_src=MODULE_SRC[kind])


def augment_pipe_record(*, numpy_arrays: bool = False) -> PersistentObject:
    """The 'bgc' AugmentPipe the official train.py builds (`--aug=ada`): float attributes, `imgfilter_bands` a list,
    buffers p / Hz_geom / Hz_fbank. `numpy_arrays` stores two attributes as numpy arrays (some files have them)."""
    gen = torch.Generator().manual_seed(3)
    opts = dict(xflip=1, rotate90=1, xint=1, scale=1, rotate=1, aniso=1, xfrac=1, brightness=1, contrast=1,
                lumaflip=1, hue=1, saturation=1)
    # AugmentPipe.__init__ stores every option as a float, in its signature's order.
    defaults = dict(xflip=0, rotate90=0, xint=0, xint_max=0.125, scale=0, rotate=0, aniso=0, xfrac=0,
                    scale_std=0.2, rotate_max=1, aniso_std=0.2, xfrac_std=0.125, brightness=0, contrast=0,
                    lumaflip=0, hue=0, saturation=0, brightness_std=0.2, contrast_std=0.5, hue_max=1,
                    saturation_std=1, imgfilter=0, imgfilter_bands=[1, 1, 1, 1], imgfilter_std=1, noise=0,
                    cutout=0, noise_std=0.1, cutout_size=0.5)
    attributes: dict[str, Any] = {k: list(v) if isinstance(v, list) else float(opts.get(k, v))
                                  for k, v in defaults.items()}
    if numpy_arrays:
        attributes["imgfilter_bands"] = np.array([1.0, 1.0, 1.0, 1.0], dtype=np.float32)
        attributes["lumaflip_axis"] = np.eye(4, dtype=np.float64)[:3]
    buffers = dict(p=torch.tensor(0.2), Hz_geom=torch.randn(12, generator=gen),
                   Hz_fbank=torch.randn(4, 43, generator=gen))
    return _record("AugmentPipe", kind="augment", buffers=buffers, attributes=attributes, init_kwargs=opts)


def stylegan3_generator_record(*, resolution: int = 16, seed: int = 0) -> PersistentObject:
    """A small alias-free StyleGAN3 Generator record as stylegan3's train.py (`--cfg=stylegan3-t`) writes it."""
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=gen)  # noqa: E731
    w = 8
    fc = lambda i, o: _record("FullyConnectedLayer", kind="stylegan3",  # noqa: E731
                              parameters=dict(weight=rnd(o, i), bias=rnd(o)),
                              attributes=dict(in_features=i, out_features=o, activation="lrelu",
                                              weight_gain=np.float64(i ** -0.5), bias_gain=0.01))
    mapping = _record("MappingNetwork", kind="stylegan3", modules=dict(fc0=fc(w, w), fc1=fc(w, w)),
                      buffers=dict(w_avg=rnd(w)), attributes=dict(z_dim=w, c_dim=0, w_dim=w, num_ws=4))
    synth_input = _record("SynthesisInput", kind="stylegan3", modules=dict(affine=fc(w, 4)),
                          parameters=dict(weight=rnd(w, w)),
                          buffers=dict(transform=torch.eye(3), freqs=rnd(w, 2), phases=rnd(w)),
                          attributes=dict(w_dim=w, channels=w, size=np.array([36, 36]),
                                          sampling_rate=16, bandwidth=2))
    layers = {f"L{i}_36_{w}": _record("SynthesisLayer", kind="stylegan3", modules=dict(affine=fc(w, w)),
                                      parameters=dict(weight=rnd(w, w, 3, 3), bias=rnd(w)),
                                      buffers=dict(magnitude_ema=torch.ones([]), up_filter=rnd(12)),
                                      attributes=dict(is_torgb=False, in_sampling_rate=16, out_sampling_rate=16,
                                                      conv_kernel=3))
              for i in range(2)}
    synthesis = _record("SynthesisNetwork", kind="stylegan3", modules=dict(input=synth_input, **layers),
                        attributes=dict(w_dim=w, num_ws=4, img_resolution=resolution, img_channels=3))
    init = dict(z_dim=w, w_dim=w, mapping_kwargs=EasyDict(num_layers=2), channel_base=32768, channel_max=512,
                magnitude_ema_beta=0.5 ** (32 / (20 * 1e3)), c_dim=0, img_resolution=resolution, img_channels=3)
    return _record("Generator", kind="stylegan3", modules=dict(synthesis=synthesis, mapping=mapping),
                   attributes=dict(z_dim=w, c_dim=0, w_dim=w, img_resolution=resolution, img_channels=3, num_ws=4),
                   init_kwargs=init)


# --------------------------------------------------------------------------------------------- the file


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


def write_official_pickle(path: str | Path, G: nn.Module | None, D: nn.Module | None, *, layout: str = "ada",
                          extra: Mapping[str, Any] | None = None, config=None,
                          protocol: int = pickle.DEFAULT_PROTOCOL,
                          g_ema_overrides: Mapping[str, torch.Tensor | None] | None = None,
                          g_ema_state_extra: Mapping[str, Any] | None = None,
                          g_ema_record: PersistentObject | None = None, numpy_values: bool = False,
                          augment_numpy_arrays: bool = False,
                          d_state_extra: Mapping[str, Any] | None = None) -> Path:
    """Pickle a training snapshot of `G` (as `G` and `G_ema`) and `D` the way `layout`'s training loop does.

    `G_ema` holds `G`'s weights; the training-time `G` record gets perturbed weights, so a loader reading the
    wrong network is caught. `config` (a ModelConfig) supplies the constructor kwargs; without it they are read
    off the networks. `g_ema_overrides` replaces (tensor) or drops (None) `G_ema` tensors by dotted name;
    `g_ema_state_extra` adds raw entries to the `G_ema` record's state; `g_ema_record` replaces the `G` and
    `G_ema` records altogether (e.g. `stylegan3_generator_record()`); `d_state_extra` adds raw entries to the
    `D` record's state. `protocol` defaults to what a bare
    `pickle.dump` uses here.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}")
    src = MODULE_SRC[layout]
    path = Path(path)
    saved = _install_fake_modules()
    try:
        if g_ema_record is not None:
            g_ema, g_train = g_ema_record, copy.deepcopy(g_ema_record)
            resolution = g_ema_record.meta["state"]["img_resolution"]
        else:
            g_calls = generator_calls(G, generator_init_kwargs(G, config, layout=layout, numpy_values=numpy_values),
                                      layout)
            g_ema = module_record(G, module_src=src, calls=g_calls, overrides=g_ema_overrides)
            perturbed = {name: t + 0.25 if t.is_floating_point() else t for name, t in G.state_dict().items()}
            g_train = module_record(G, module_src=src, calls=g_calls, overrides=perturbed)
            resolution = int(G.img_resolution)
        if g_ema_state_extra:
            g_ema.meta["state"].update(g_ema_state_extra)
        d_rec = None
        if D is not None:
            d_calls = discriminator_calls(D, discriminator_init_kwargs(D, config, layout=layout), layout)
            d_rec = module_record(D, module_src=src, calls=d_calls)
            d_rec.meta["state"].update(d_state_extra or {})
        training_set_kwargs = dict(EasyDict(class_name="training.dataset.ImageFolderDataset",
                                            path="~/datasets/tiny.zip", use_labels=False, max_size=1000,
                                            xflip=False, resolution=resolution, random_seed=0))
        networks = dict(G=g_train, D=d_rec, G_ema=g_ema, augment_pipe=augment_pipe_record(
            numpy_arrays=augment_numpy_arrays))
        if layout == "ada":
            data: dict[str, Any] = dict(training_set_kwargs=training_set_kwargs, **networks)
        else:
            data = dict(**networks, training_set_kwargs=training_set_kwargs)
        if D is None:
            del data["D"]
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
