"""MobileNetV2 1.0 (ImageNet, batch norm folded, ReLU6, TF 'SAME' padding) and its shipped converted weights.

`MobileNetV2()(x)` maps the network's own input range (`[N, 3, H, W]`, what the TFLite file expects after its input
dequantisation; see the sidecar's `input`) to 1001 logits (index 0 = background); `features(x)` returns the
block outputs at strides 2, 4, 8, 16 and 32. `load_mobilenet()` reads `assets/models/perceptual/mobilenet_v2.*`
(made by `python -m models.convert_mobilenet`) strictly, offline, into float32.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from .strict_load import CheckpointError, load_strict

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "assets" / "models" / "perceptual" / "mobilenet_v2.safetensors"
# (expansion t, output channels c, repeats n, first stride s): the MobileNetV2 paper's table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
            (6, 320, 1, 1))
# Block indices whose outputs are the last ones at strides 2, 4, 8, 16, 32 (16, 24, 32, 96, 320 channels).
FEATURE_BLOCKS = (0, 2, 5, 12, 16)


class SameConv2d(nn.Conv2d):
    """Conv2d (bias, no padding of its own) with TensorFlow 'SAME' padding: out = ceil(in / stride), and an
    odd total padding puts the extra row/column at the bottom/right (stride 2 on even sizes pads only there)."""

    def __init__(self, cin: int, cout: int, k: int, *, stride: int = 1, groups: int = 1, relu6: bool) -> None:
        super().__init__(cin, cout, k, stride=stride, groups=groups, bias=True)
        self.relu6 = relu6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        if k > 1:
            pads = []
            for size in (x.shape[-1], x.shape[-2]):  # F.pad order: width first, then height
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        x = self._conv_forward(x, self.weight, self.bias)
        return F.relu6(x) if self.relu6 else x


class InvertedResidual(nn.Module):
    """expand 1x1 (ReLU6, absent when t = 1) -> depthwise 3x3 (ReLU6) -> linear project 1x1 (+ input if same shape)."""

    def __init__(self, cin: int, cout: int, *, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.expand = SameConv2d(cin, hidden, 1, relu6=True) if expand != 1 else None
        self.depthwise = SameConv2d(hidden, hidden, 3, stride=stride, groups=hidden, relu6=True)
        self.project = SameConv2d(hidden, cout, 1, relu6=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class MobileNetV2(nn.Module):
    """Width 1.0; stem 3x3/2 (32), 17 inverted residual blocks, 1x1 head (1280), average pool, 1x1 classifier."""

    def __init__(self, num_classes: int = 1001) -> None:
        super().__init__()
        self.stem = SameConv2d(3, 32, 3, stride=2, relu6=True)
        blocks, cin = [], 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, stride=s if i == 0 else 1, expand=t))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head = SameConv2d(cin, 1280, 1, relu6=True)
        self.classifier = SameConv2d(1280, num_classes, 1, relu6=False)

    def convs(self) -> list[SameConv2d]:
        """Every convolution in forward order (the order of the TFLite graph's conv operators)."""
        return [m for m in self.modules() if isinstance(m, SameConv2d)]

    def block_outputs(self, x: torch.Tensor, *, upto: int | None = None) -> list[torch.Tensor]:
        """Output of each block (0..upto, default all 17)."""
        x = self.stem(x)
        outs = []
        for block in self.blocks[: (upto + 1) if upto is not None else None]:
            x = block(x)
            outs.append(x)
        return outs

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Block outputs at strides 2, 4, 8, 16, 32 (blocks FEATURE_BLOCKS); the head is never run."""
        outs = self.block_outputs(x, upto=FEATURE_BLOCKS[-1])
        return [outs[i] for i in FEATURE_BLOCKS]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.block_outputs(x)[-1])
        return self.classifier(x.mean(dim=[2, 3], keepdim=True)).flatten(1)


def input_affine(meta: dict) -> tuple[float, float]:
    """(gain, offset) taking images in [-1, 1] to the network's input range: `x * gain + offset`.

    pixel = (x + 1) * 127.5 in 0..255, then (pixel - zero_point) * scale (the sidecar's input quantisation)."""
    scale, zero = float(meta["input"]["scale"]), float(meta["input"]["zero_point"])
    return 127.5 * scale, (127.5 - zero) * scale


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def load_mobilenet(path: str | Path | None = None, *,
                   device: str | torch.device = "cpu") -> tuple[MobileNetV2, dict]:
    """-> (float32 network in eval mode without grads, its sidecar dict); raises CheckpointError if anything is off."""
    weights = Path(path) if path is not None else DEFAULT_PATH
    meta_file = sidecar_path(weights)
    for f in (weights, meta_file):
        if not f.is_file():
            raise CheckpointError(f"MobileNetV2 weights: {f} not found (make it with python -m models.convert_mobilenet)")
    try:
        meta = json.loads(meta_file.read_text())
        net = MobileNetV2(num_classes=int(meta.get("num_classes", 1001)))
        state = load_file(str(weights))
    except Exception as exc:  # malformed JSON or safetensors header
        raise CheckpointError(f"MobileNetV2 weights {weights}: unreadable ({exc})") from exc
    load_strict(net, state, what=weights.name)
    return net.to(device).eval().requires_grad_(False), meta
