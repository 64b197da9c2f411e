"""MobileNetV2 (models/mobilenet.py): TF 'SAME' padding, the shipped asset loads strictly and sees a cat, and
(when ../shared/weights is there) the converted network matches the LiteRT interpreter layer by layer."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from models.mobilenet import DEFAULT_PATH, FEATURE_BLOCKS, MobileNetV2, SameConv2d, load_mobilenet
from models.strict_load import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples"
SOURCE = ROOT.parent / "shared" / "weights" / "mobilenet_v2_1.0_224_quant.tflite"
# ImageNet classes 281-285 (tabby, tiger cat, Persian, Siamese, Egyptian cat), +1 for the background class 0.
CAT_CLASSES = {282, 283, 284, 285, 286}
PHOTOS = ("chelsea.png", "astronaut.png", "chelsea_face.png", "astronaut_face.png")


def _pixels(name: str, size: int) -> np.ndarray:
    return np.asarray(Image.open(EXAMPLES / name).convert("RGB").resize((size, size), Image.BILINEAR))


def _net_input(pixels: np.ndarray, meta: dict) -> torch.Tensor:
    x = (pixels.astype(np.float32) - meta["input"]["zero_point"]) * meta["input"]["scale"]
    return torch.from_numpy(x).permute(2, 0, 1)[None]


def test_same_padding_puts_the_extra_row_and_column_at_the_bottom_right():
    conv = SameConv2d(1, 1, 3, stride=2, relu6=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1.0  # picks the window's top-left tap
        conv.bias.zero_()
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    y = conv(x)
    assert y.shape[-2:] == (2, 2)  # ceil(4 / 2)
    # TF pads (0 top/left, 1 bottom/right): windows start at rows/cols 0 and 2 of the unpadded input.
    assert torch.equal(y[0, 0], x[0, 0, ::2, ::2])
    odd = SameConv2d(1, 1, 3, stride=2, relu6=False)(torch.zeros(1, 1, 7, 7))
    assert odd.shape[-2:] == (4, 4)


def test_features_have_strides_2_to_32():
    net = MobileNetV2().eval()
    with torch.no_grad():
        feats = net.features(torch.zeros(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    assert [f.shape[1] for f in feats] == [16, 24, 32, 96, 320]
    assert len(FEATURE_BLOCKS) == 5


def test_shipped_asset_loads_strictly_and_sees_a_tabby_cat():
    net, meta = load_mobilenet()
    assert meta["licence"] == "Apache-2.0" and len(meta["source_sha256"]) == 64
    assert (DEFAULT_PATH.parent / "LICENSE-mobilenet").read_text().lstrip().startswith("Apache License")
    stored = load_file(str(DEFAULT_PATH))
    assert set(stored) == set(net.state_dict())
    assert all(stored[k].shape == v.shape for k, v in net.state_dict().items())
    with torch.no_grad():
        logits = net(_net_input(_pixels("chelsea.png", 224), meta))[0]
    assert int(logits.argmax()) in CAT_CLASSES
    assert len(set(logits.topk(3).indices.tolist()) & CAT_CLASSES) >= 2


def test_a_file_with_a_missing_or_misshaped_tensor_is_refused(tmp_path):
    state = load_file(str(DEFAULT_PATH))
    meta = DEFAULT_PATH.with_suffix(".json").read_text()
    bad = dict(state)
    del bad["head.bias"]
    save_file(bad, str(tmp_path / "a.safetensors"))
    (tmp_path / "a.json").write_text(meta)
    with pytest.raises(CheckpointError, match="head.bias"):
        load_mobilenet(tmp_path / "a.safetensors")
    bad = dict(state)
    bad["stem.weight"] = bad["stem.weight"][:16]
    save_file(bad, str(tmp_path / "b.safetensors"))
    (tmp_path / "b.json").write_text(meta)
    with pytest.raises(CheckpointError, match="stem.weight"):
        load_mobilenet(tmp_path / "b.safetensors")


needs_source = pytest.mark.skipif(not SOURCE.is_file(), reason=f"{SOURCE} not present (clean clone)")


@needs_source
def test_converter_reproduces_the_shipped_asset():
    pytest.importorskip("tflite")
    from models.catalogue import sha256_of
    from models.convert_mobilenet import TFLiteGraph, convert
    meta = load_mobilenet()[1]
    assert meta["source_sha256"] == sha256_of(SOURCE)
    state = convert(TFLiteGraph(SOURCE))
    shipped = load_file(str(DEFAULT_PATH))
    assert set(state) == set(shipped)
    assert all(torch.equal(state[k].half(), shipped[k]) for k in state)


@needs_source
@pytest.mark.parametrize("size", [224, 200])  # 200: odd sizes on the way down (25 -> 13) and other paddings
def test_matches_the_litert_interpreter(size):
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    pytest.importorskip("tflite")
    from models.convert_mobilenet import TFLiteGraph
    graph = TFLiteGraph(SOURCE)
    block_tensors = graph.block_output_tensors()
    logits_tensor = graph.conv_ops()[-1].outputs[0]
    net, meta = load_mobilenet()
    itp = litert.Interpreter(model_path=str(SOURCE), experimental_preserve_all_tensors=True, num_threads=1)
    index = itp.get_input_details()[0]["index"]
    if size != 224:
        itp.resize_tensor_input(index, [1, size, size, 3])
    itp.allocate_tensors()

    def dequantised(t: int) -> np.ndarray:
        q = graph.tensor(t)
        return (itp.get_tensor(t).astype(np.float64) - q.zero_point[0]) * q.scale[0]

    for name in PHOTOS[: 4 if size == 224 else 1]:
        pixels = _pixels(name, size)
        itp.set_tensor(index, pixels[None])
        itp.invoke()
        with torch.no_grad():
            x = _net_input(pixels, meta)
            ours = net.block_outputs(x)
            logits = net(x)[0].double().numpy()
        theirs = dequantised(logits_tensor).reshape(-1)
        if size == 224:
            assert set(np.argsort(-theirs)[:5]) == set(np.argsort(-logits)[:5]), name
        for b, t in enumerate(block_tensors):  # every block, the five tapped ones included
            a = dequantised(t)[0]
            o = ours[b][0].permute(1, 2, 0).double().numpy()
            assert a.shape == o.shape, (name, b)
            r = np.corrcoef(a.reshape(-1), o.reshape(-1))[0, 1]
            assert r >= 0.99, f"{name} block {b}: correlation {r:.4f}"
