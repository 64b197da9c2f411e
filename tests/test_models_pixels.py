"""models.pixels: the [-1, 1] <-> 0..255 scale shared by the trainer, the sample metric, the engine and the app."""
import numpy as np
import torch

from engine.runstate import to_tensor, to_uint8 as engine_to_uint8
from models.pixels import from_uint8, to_uint8


def test_every_level_round_trips_and_ends_map_to_ends():
    levels = torch.arange(256, dtype=torch.uint8)
    x = from_uint8(levels)
    assert x.dtype == torch.float32
    assert x[0].item() == -1.0 and x[-1].item() == 1.0
    assert torch.equal(to_uint8(x), levels)


def test_out_of_range_is_clamped_and_rounding_is_to_nearest():
    x = torch.tensor([-3.0, 3.0, 1.4 / 127.5 - 1, 1.6 / 127.5 - 1, 1 - 0.6 / 127.5])
    assert to_uint8(x).tolist() == [0, 255, 1, 2, 254]


def test_layout_and_grad_are_left_alone():
    x = torch.zeros(2, 3, 4, 5, requires_grad=True)
    u = to_uint8(x)
    assert u.shape == x.shape and u.dtype == torch.uint8 and not u.requires_grad


def test_engine_image_helpers_use_the_same_scale():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    t = to_tensor(rgb, "cpu")
    assert t.shape == (1, 3, 6, 7)
    assert torch.equal(t, from_uint8(torch.from_numpy(rgb)).permute(2, 0, 1)[None])
    assert np.array_equal(engine_to_uint8(t), rgb)
