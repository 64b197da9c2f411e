"""Convert a quantised TFLite MobileNetV2 1.0 ImageNet classifier into `models.mobilenet` fp16 safetensors + JSON.

CLI: `python -m models.convert_mobilenet FILE.tflite OUT[.safetensors]`. Reads the flatbuffer with the `tflite`
package (a converter-only dependency), dequantises every conv weight and bias ((q - zero_point) * scale,
per output channel where the file has per-channel scales), checks each operator against the PyTorch network
(kind, shape, stride, 'SAME' padding, fused ReLU6 or none) and records the source's sha256, licence and input
quantisation in the sidecar.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from .catalogue import sha256_of
from .mobilenet import FEATURE_BLOCKS, MobileNetV2

LICENCE = "Apache-2.0"
SOURCE_REPO = "google-coral/test_data (commit 104342d2d3480b3e66203073dac24f4e2dbb4c41)"
_NUMPY = {0: np.float32, 2: np.int32, 3: np.uint8, 9: np.int8}  # tflite.TensorType values used here
_RELU6 = 3  # tflite.ActivationFunctionType.RELU6
_SAME = 0  # tflite.Padding.SAME


@dataclass(frozen=True)
class QTensor:
    """One graph tensor: index, name, shape, dequantisation (scale/zero point per channel or scalar)."""

    index: int
    name: str
    shape: tuple[int, ...]
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


@dataclass(frozen=True)
class Op:
    """One graph operator: builtin name, input and output tensor indices, conv options (if a conv)."""

    kind: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    stride: int = 1
    padding: int = -1
    activation: int = 0


class TFLiteGraph:
    """The first subgraph of a .tflite file: operators in order, tensor metadata and constant buffers."""

    def __init__(self, path: str | Path) -> None:
        import tflite  # converter-only dependency: the app never imports this module
        self._tflite = tflite
        self.data = Path(path).read_bytes()
        self.model = tflite.Model.GetRootAsModel(self.data, 0)
        if self.model.SubgraphsLength() != 1:
            raise ValueError("expected a single-subgraph TFLite model")
        self.graph = self.model.Subgraphs(0)
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.ops: list[Op] = []
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            kind = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")
            extra = {}
            if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                opts = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
                opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
                if opts.StrideH() != opts.StrideW():
                    raise ValueError(f"operator {i}: unequal strides")
                if kind == "DEPTHWISE_CONV_2D" and opts.DepthMultiplier() not in (0, 1):
                    raise ValueError(f"operator {i}: depth multiplier {opts.DepthMultiplier()}")
                extra = dict(stride=opts.StrideH(), padding=opts.Padding(),
                             activation=opts.FusedActivationFunction())
            self.ops.append(Op(kind, tuple(int(t) for t in op.InputsAsNumpy()),
                               tuple(int(t) for t in op.OutputsAsNumpy()), **extra))

    def tensor(self, index: int) -> QTensor:
        t = self.graph.Tensors(index)
        q = t.Quantization()
        scale = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else np.ones(1, np.float32)
        zp = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else np.zeros(1, np.int64)
        return QTensor(index, t.Name().decode(), tuple(int(s) for s in t.ShapeAsNumpy()),
                       np.asarray(scale, np.float64), np.asarray(zp, np.int64),
                       q.QuantizedDimension() if q is not None else 0)

    def dequantised(self, index: int) -> np.ndarray:
        """A constant tensor as float64: (q - zero_point) * scale, broadcast along its quantised axis."""
        t = self.graph.Tensors(index)
        raw = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if not isinstance(raw, np.ndarray) or raw.size == 0:
            raise ValueError(f"tensor {index} ({t.Name().decode()}) has no constant data")
        q = np.frombuffer(raw.tobytes(), dtype=_NUMPY[t.Type()]).reshape(t.ShapeAsNumpy()).astype(np.float64)
        meta = self.tensor(index)
        if t.Type() == 0:
            return q
        shape = [1] * q.ndim
        if meta.scale.size > 1:
            shape[meta.axis] = meta.scale.size
        return (q - meta.zero_point.reshape(shape)) * meta.scale.reshape(shape)

    def conv_ops(self) -> list[Op]:
        return [op for op in self.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]

    def input_quantisation(self) -> tuple[float, int]:
        """(scale, zero point) of the first quantised tensor the uint8 input is read as."""
        t = self.tensor(int(self.graph.InputsAsNumpy()[0]))
        return float(t.scale[0]), int(t.zero_point[0])

    def block_output_tensors(self) -> list[int]:
        """Tensor index of each inverted-residual block's output (its ADD when residual, else its projection)."""
        convs = self.conv_ops()
        net = MobileNetV2()
        project_ids = {id(b.project): bi for bi, b in enumerate(net.blocks)}
        out = []
        for conv, op in zip(net.convs(), convs):
            if id(conv) not in project_ids:
                continue
            t = op.outputs[0]
            adds = [o for o in self.ops if o.kind == "ADD" and t in o.inputs]
            out.append(adds[0].outputs[0] if adds and net.blocks[project_ids[id(conv)]].residual else t)
        return out


def convert(graph: TFLiteGraph) -> dict[str, torch.Tensor]:
    """Dequantised float32 state dict for `MobileNetV2`, checked operator by operator."""
    net = MobileNetV2()
    convs, ops = net.convs(), graph.conv_ops()
    if len(convs) != len(ops):
        raise ValueError(f"graph has {len(ops)} convolutions, MobileNetV2 1.0 has {len(convs)}")
    names = {id(m): n for n, m in net.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for i, (conv, op) in enumerate(zip(convs, ops)):
        where = f"conv {i} ({names[id(conv)]})"
        depthwise = conv.groups > 1
        if (op.kind == "DEPTHWISE_CONV_2D") != depthwise:
            raise ValueError(f"{where}: graph has {op.kind}")
        if op.stride != conv.stride[0] or (conv.kernel_size[0] > 1 and op.padding != _SAME):
            raise ValueError(f"{where}: stride {op.stride} / padding {op.padding} differ")
        if (op.activation == _RELU6) != conv.relu6 or op.activation not in (0, _RELU6):
            raise ValueError(f"{where}: fused activation {op.activation} differs")
        w = graph.dequantised(op.inputs[1])
        # TFLite: conv [O, H, W, I], depthwise [1, H, W, C]; PyTorch: [O, I/groups, H, W].
        w = w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)
        b = graph.dequantised(op.inputs[2])
        if tuple(w.shape) != tuple(conv.weight.shape) or tuple(b.shape) != tuple(conv.bias.shape):
            raise ValueError(f"{where}: shapes {w.shape}/{b.shape} vs {tuple(conv.weight.shape)}")
        state[f"{names[id(conv)]}.weight"] = torch.from_numpy(np.ascontiguousarray(w)).float()
        state[f"{names[id(conv)]}.bias"] = torch.from_numpy(b).float()
    return state


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m models.convert_mobilenet", description=__doc__.splitlines()[0])
    p.add_argument("tflite")
    p.add_argument("out", help="output .safetensors (a .json sidecar is written beside it)")
    a = p.parse_args(argv)
    src = Path(a.tflite)
    graph = TFLiteGraph(src)
    state = convert(graph)
    out = Path(a.out).with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(out),
              metadata={"format": "latentbrush-mobilenet_v2", "source": src.name})
    scale, zp = graph.input_quantisation()
    meta = {
        "network": "MobileNetV2 1.0 (models.mobilenet.MobileNetV2), batch norm folded, ImageNet, 1001 classes",
        "num_classes": 1001,
        "source_file": src.name,
        "source_sha256": sha256_of(src),
        "source": SOURCE_REPO,
        "licence": LICENCE,
        "dtype": "float16",
        "input": {"layout": "RGB", "pixel_range": [0, 255], "scale": scale, "zero_point": zp,
                  "formula": "x = (pixel - zero_point) * scale, pixel in 0..255"},
        "feature_blocks": list(FEATURE_BLOCKS),
        "converted_by": "python -m models.convert_mobilenet",
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{src.name} -> {out} ({len(state)} tensors, input x = (pixel - {zp}) * {scale:.8g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
