"""Which official NVlabs source file a persistence record's `module_src` is, by parsing it (never running it).

Official network pickles store each object's bare class name (`Generator`, `SynthesisLayer`, ...) and the
full source of the module that defined it. The same bare names exist in three files that build different
networks, so the file is told apart by definitions only it has:

- stylegan2-ada-pytorch `training/networks.py`: `Generator(..., mapping_kwargs={}, synthesis_kwargs={})`.
- stylegan3 repository `training/networks_stylegan2.py`: `Generator(..., mapping_kwargs={}, **synthesis_kwargs)`
  and `SynthesisBlock(..., fused_modconv_default=...)`.
- stylegan3 repository `training/networks_stylegan3.py` (alias-free, not supported): `SynthesisInput`, and
  `SynthesisLayer(..., is_torgb, ..., in_sampling_rate, ...)`.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass

ADA = "stylegan2-ada-pytorch training/networks.py"
SG3_STYLEGAN2 = "stylegan3 training/networks_stylegan2.py"
SG3_STYLEGAN3 = "stylegan3 training/networks_stylegan3.py"
OTHER = "other"
SUPPORTED = (ADA, SG3_STYLEGAN2)
_STYLEGAN2_CLASSES = {"Generator", "MappingNetwork", "SynthesisNetwork", "SynthesisBlock", "SynthesisLayer",
                      "ToRGBLayer", "FullyConnectedLayer"}


@dataclass(frozen=True)
class SourceInfo:
    """What a `module_src` is: `kind` (one of ADA, SG3_STYLEGAN2, SG3_STYLEGAN3, OTHER) and its top-level classes."""

    kind: str
    classes: frozenset[str]


def _init_params(cls: ast.ClassDef) -> tuple[set[str], str | None]:
    """(named parameters, name of the **kwargs parameter) of the class's `__init__`."""
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            a = node.args
            names = {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
            return names, (a.kwarg.arg if a.kwarg else None)
    return set(), None


@functools.lru_cache(maxsize=32)
def describe_source(module_src: str) -> SourceInfo:
    """Parse `module_src` (syntax only) and say which official file it is. Unparseable source -> OTHER."""
    try:
        tree = ast.parse(module_src)
    except (SyntaxError, ValueError):
        return SourceInfo(OTHER, frozenset())
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    names = frozenset(classes)
    if "SynthesisLayer" in classes:
        layer, _ = _init_params(classes["SynthesisLayer"])
        if "SynthesisInput" in classes or {"is_torgb", "in_sampling_rate"} <= layer:
            return SourceInfo(SG3_STYLEGAN3, names)
    if not _STYLEGAN2_CLASSES <= names:
        return SourceInfo(OTHER, names)
    g_params, g_kwarg = _init_params(classes["Generator"])
    block_params, _ = _init_params(classes["SynthesisBlock"])
    if "synthesis_kwargs" in g_params and "fused_modconv_default" not in block_params:
        return SourceInfo(ADA, names)
    if g_kwarg == "synthesis_kwargs" and "fused_modconv_default" in block_params:
        return SourceInfo(SG3_STYLEGAN2, names)
    return SourceInfo(OTHER, names)
