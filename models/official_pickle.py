"""Load official StyleGAN2-ADA / StyleGAN3-repo (`networks_stylegan2`) network pickles without their code.

A restricted `pickle.Unpickler` allows only the globals needed to rebuild tensors, numpy scalars/arrays,
EasyDicts and persistence records; everything else (e.g. `os.system`) is refused before it can be
called. A record's bare `class_name` plus the official file its `module_src` is (`models.official_source`
parses it; the pickled source is never run) pick our module, `_init_kwargs` (with that file's defaults)
configure it; parameters and buffers are mapped by name and checked strictly. StyleGAN3 is refused.
"""
from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn

from .config import ModelConfig, build_discriminator, build_generator
from .official_source import ADA, SG3_STYLEGAN2, SG3_STYLEGAN3, SUPPORTED, SourceInfo, describe_source
from .strict_load import CheckpointError, load_strict

# Options that only change memory layout or training behaviour, not the maths of a forward pass.
_LAYOUT_ONLY = {"fp16_channels_last", "channels_last", "freeze_layers", "fused_modconv_default"}
# Constructor defaults that differ between the two StyleGAN2 files: a record's `_init_kwargs` holds only what
# the caller passed (the stylegan3 repo's train.py leaves num_fp16_res/conv_clamp to these defaults).
_SYNTHESIS_DEFAULTS = {ADA: {"num_fp16_res": 0, "conv_clamp": None}, SG3_STYLEGAN2: {"num_fp16_res": 4, "conv_clamp": 256}}
_MAPPING_DEFAULTS = {ADA: {"w_avg_beta": 0.995}, SG3_STYLEGAN2: {"w_avg_beta": 0.998}}
_D_DEFAULTS = {ADA: {"num_fp16_res": 0, "conv_clamp": None}, SG3_STYLEGAN2: {"num_fp16_res": 4, "conv_clamp": 256}}
_SUPPORTED_TEXT = " or ".join(SUPPORTED)


@dataclass
class PersistentRecord:
    """An inert stand-in for a `torch_utils.persistence` object: bare class name, what its `module_src` is
    (`describe_source`, parsed, never run), and its pickled `__dict__`."""

    class_name: str
    state: dict
    source: SourceInfo
    version: Any = None


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    # Official `persistent_class.__reduce__`: meta = dict(type, version, module_src, class_name, state) with the
    # BARE class name; which file the class came from shows only in `module_src`.
    if (not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict)
            or not isinstance(meta.get("class_name"), str) or not isinstance(meta.get("module_src"), str)):
        raise CheckpointError("malformed persistence record in network pickle")
    return PersistentRecord(class_name=meta["class_name"], state=meta["state"],
                            source=describe_source(meta["module_src"]), version=meta.get("version"))


class _EasyDict(dict):
    """Plain-dict stand-in for `dnnlib.util.EasyDict`."""


def _load_storage_from_bytes(data: bytes) -> Any:
    # The official code calls torch.load() here with full pickle powers; weights_only=True allows tensors only.
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _latin1_bytes(text: Any, encoding: str = "utf-8") -> bytes:
    # Pickle protocols < 3 store bytes as `_codecs.encode(text, 'latin1')`; no other codec is needed, none allowed.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CheckpointError(f"refused to load: _codecs.encode with {type(text).__name__}/{encoding!r}")
    return text.encode("latin1")


def _numpy_global(name: str) -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("_codecs", "encode"): _latin1_bytes,
    ("numpy", "dtype"): np.dtype,
    ("numpy", "ndarray"): np.ndarray,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals in `_ALLOWED` (numpy scalar/array helpers included)."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol <= 2 pickles use Python 2 names (`__builtin__.set`); map them as pickle.Unpickler does.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        key = (module, name)
        if key in _ALLOWED:
            return _ALLOWED[key]
        if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in ("scalar", "_reconstruct"):
            return _numpy_global(name)
        raise CheckpointError(f"refused to load: the file references {module}.{name}, which has no business "
                              "in a network pickle (only tensors, numpy data and persistence records are allowed)")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("refused to load: unexpected persistent id in network pickle")


def read_pickle(f: BinaryIO) -> Any:
    """Unpickle with the restricted unpickler (raises CheckpointError for anything not allowed)."""
    try:
        return RestrictedUnpickler(f).load()
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(f"not a readable network pickle ({type(exc).__name__}: {exc})") from exc


def _plain(obj: Any) -> Any:
    """EasyDicts/OrderedDicts -> dicts, numpy values -> Python values, recursively (for constructor kwargs)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj


def flatten_record(record: PersistentRecord, prefix: str = "") -> dict[str, torch.Tensor]:
    """All parameters and persistent buffers of a record tree by dotted name."""
    state = record.state
    out: dict[str, torch.Tensor] = {}
    non_persistent = set(state.get("_non_persistent_buffers_set", ()) or ())
    for name, p in (state.get("_parameters") or {}).items():
        if p is not None:
            out[prefix + name] = torch.as_tensor(p).detach()
    for name, b in (state.get("_buffers") or {}).items():
        if b is not None and name not in non_persistent:
            out[prefix + name] = torch.as_tensor(b).detach()
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise CheckpointError(f"submodule {prefix}{name} is not a persistence record ({type(child).__name__})")
        out.update(flatten_record(child, f"{prefix}{name}."))
    return out


def _check_record(record: PersistentRecord, *, what: str, class_name: str) -> str:
    """The official file `record` (a network root) came from; refuse anything but the supported StyleGAN2 files,
    and submodule records from another file or naming a class their source does not define."""
    kind = record.source.kind
    if kind == SG3_STYLEGAN3:
        raise CheckpointError(f"{what} is an alias-free StyleGAN3 network (stylegan3's training/networks_stylegan3.py); "
                              f"StyleGAN3 is not supported. Supported: StyleGAN2 networks from {_SUPPORTED_TEXT} "
                              "(e.g. stylegan2-ada-pytorch's ffhq.pkl/afhqcat.pkl, stylegan3's stylegan2-*.pkl)")
    if kind not in SUPPORTED:
        raise CheckpointError(f"{what}: class {record.class_name!r} comes from source code that is neither "
                              f"{_SUPPORTED_TEXT} (the StyleGAN2 networks supported)")
    if record.class_name != class_name:
        raise CheckpointError(f"unsupported {what} class {record.class_name!r} (expected {class_name!r} from "
                              f"{_SUPPORTED_TEXT})")

    def walk(rec: PersistentRecord, path: str) -> None:
        if rec.source.kind != kind or rec.class_name not in rec.source.classes:
            raise CheckpointError(f"{what}: submodule {path} ({rec.class_name!r}) does not come from {kind}")
        for name, child in (rec.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                walk(child, f"{path}.{name}")

    walk(record, what)
    return kind


def _strip(kwargs: dict, what: str, allowed: set[str]) -> dict:
    unknown = sorted(set(kwargs) - allowed - _LAYOUT_ONLY)
    if unknown:
        raise CheckpointError(f"{what}: unsupported constructor options {unknown}")
    return {k: v for k, v in kwargs.items() if k not in _LAYOUT_ONLY}


def _with_defaults(kwargs: dict, defaults: dict) -> dict:
    """`kwargs` plus the source file's defaults for what the record leaves out (recorded options first)."""
    return {**kwargs, **{k: v for k, v in defaults.items() if k not in kwargs}}


def _lrelu_only(kwargs: dict, what: str) -> dict:
    # Networks converted from TensorFlow (legacy.py) pass activation='lrelu' down to every synthesis layer;
    # that is what our synthesis layers do anyway, anything else they cannot.
    act = kwargs.pop("activation", "lrelu")
    if act != "lrelu":
        raise CheckpointError(f"{what}: unsupported activation {act!r} (only 'lrelu')")
    return kwargs


def generator_kwargs(record: PersistentRecord) -> dict:
    """Our Generator kwargs from an official G record (ADA nests synthesis_kwargs, the SG3 repo flattens)."""
    kind = _check_record(record, what="generator", class_name="Generator")
    init = _plain(record.state.get("_init_kwargs") or {})
    args = list(_plain(record.state.get("_init_args") or ()))
    names = ["z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"]
    init.update(dict(zip(names, args)))
    top = {k: init.pop(k) for k in names if k in init}
    missing = [k for k in names if k not in top]
    if missing:
        raise CheckpointError(f"generator record lacks constructor arguments {missing}")
    mapping = _with_defaults(init.pop("mapping_kwargs", None) or {}, _MAPPING_DEFAULTS[kind])
    mapping = _strip(mapping, "mapping network", {"num_layers", "embed_features", "layer_features", "activation",
                                                  "lr_multiplier", "w_avg_beta"})
    if kind == ADA:
        synthesis = dict(init.pop("synthesis_kwargs", None) or {})
        if init:
            raise CheckpointError(f"generator ({kind}): unsupported constructor options {sorted(init)}")
    else:
        synthesis = init  # stylegan3 repo: `Generator(..., **synthesis_kwargs)`
    synthesis = _lrelu_only(_with_defaults(synthesis, _SYNTHESIS_DEFAULTS[kind]), "synthesis network")
    synthesis = _strip(synthesis, "synthesis network", {"channel_base", "channel_max", "num_fp16_res",
                                                        "conv_clamp", "architecture", "resample_filter",
                                                        "use_noise"})
    return {**top, "mapping_kwargs": mapping, "synthesis_kwargs": synthesis}


def discriminator_kwargs(record: PersistentRecord) -> dict:
    kind = _check_record(record, what="discriminator", class_name="Discriminator")
    init = _with_defaults(_plain(record.state.get("_init_kwargs") or {}), _D_DEFAULTS[kind])
    args = list(_plain(record.state.get("_init_args") or ()))
    init.update(dict(zip(["c_dim", "img_resolution", "img_channels"], args)))
    if init.get("c_dim", 0):
        raise CheckpointError("conditional discriminators are not supported")
    # Unused without labels (legacy.py fills it in for every converted network).
    init.pop("mapping_kwargs", None)
    init["block_kwargs"] = _strip(init.get("block_kwargs") or {}, "discriminator block",
                                  {"activation", "resample_filter"})
    init["epilogue_kwargs"] = _strip(init.get("epilogue_kwargs") or {}, "discriminator epilogue",
                                     {"mbstd_group_size", "mbstd_num_channels", "activation"})
    return _strip(init, "discriminator", {"c_dim", "img_resolution", "img_channels", "architecture",
                                          "channel_base", "channel_max", "num_fp16_res", "conv_clamp",
                                          "cmap_dim", "block_kwargs", "epilogue_kwargs"})


def load_official_pickle(path: str | Path, *, device: str | torch.device = "cpu", name: str | None = None,
                         with_discriminator: bool = True,
                         info: dict | None = None) -> tuple[ModelConfig, nn.Module, nn.Module | None]:
    """Read `G_ema` (and `D`) from an official network pickle -> (config, G, D or None) in eval mode."""
    path = Path(path)
    with open(path, "rb") as f:
        data = read_pickle(f)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentRecord):
        raise CheckpointError(f"{path.name}: no 'G_ema' network found (keys: {sorted(data)[:10] if isinstance(data, dict) else type(data).__name__})")
    g_rec = data["G_ema"]
    d_rec = data.get("D") if with_discriminator else None
    config = ModelConfig(arch="stylegan2", g_kwargs=generator_kwargs(g_rec),
                         d_kwargs=discriminator_kwargs(d_rec) if isinstance(d_rec, PersistentRecord) else None,
                         name=name or path.stem, provenance=f"official network pickle {path.name}",
                         **(info or {}))
    G = build_generator(config)
    load_strict(G, flatten_record(g_rec), what=f"{path.name} G_ema")
    D = None
    if config.d_kwargs is not None:
        D = build_discriminator(config)
        load_strict(D, flatten_record(d_rec), what=f"{path.name} D")
    return config, G.to(device).eval(), (D.to(device).eval() if D is not None else None)
