"""Degradation operators: shapes, ranges, gradients, exact constants, composition."""
import numpy as np
import pytest
import torch

from engine.operators import GRAY_WEIGHTS, Blur, Downsample, Grayscale, build_chain, gaussian_kernel
from engine.types import EngineError, OperatorSpec


@pytest.fixture
def img():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize("spec", [OperatorSpec("identity"), OperatorSpec("mask"), OperatorSpec("grayscale"),
                                  OperatorSpec("blur", kernel_size=5, sigma=1.5),
                                  OperatorSpec("downsample", factor=4), OperatorSpec("scribble")])
def test_operator_shape_range_and_gradient(spec, img):
    chain = build_chain((spec,))
    x = img.clone().requires_grad_(True)
    y = chain(x)
    assert y.shape == x.shape
    assert float(y.detach().min()) >= -1 - 1e-5 and float(y.detach().max()) <= 1 + 1e-5
    y.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_grayscale_weights_exact():
    x = torch.tensor([0.2, -0.4, 0.9]).reshape(1, 3, 1, 1).expand(1, 3, 2, 2)
    y = Grayscale()(x)
    expected = 0.299 * 0.2 + 0.587 * -0.4 + 0.114 * 0.9
    assert GRAY_WEIGHTS == (0.299, 0.587, 0.114)
    assert torch.allclose(y, torch.full_like(y, expected), atol=1e-7)


def test_blur_kernel_normalised_and_symmetric():
    k = gaussian_kernel(9, 2.0)
    assert abs(float(k.sum()) - 1) < 1e-6
    assert torch.allclose(k, k.flip(0)) and torch.allclose(k, k.t())
    const = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(Blur(9, 2.0)(const), const, atol=1e-6)  # a flat image is unchanged


@pytest.mark.parametrize("bad", [(4, 1.0), (0, 1.0), (5, 0.0), (5, float("nan"))])
def test_blur_rejects_bad_parameters(bad):
    with pytest.raises(EngineError):
        gaussian_kernel(*bad)


def test_downsample_is_block_average(img):
    y = Downsample(4)(img)
    assert torch.allclose(y[:, :, :4, :4], img[:, :, :4, :4].mean(dim=[2, 3], keepdim=True).expand(-1, -1, 4, 4))
    with pytest.raises(EngineError):
        Downsample(3)(img)


def test_chain_composes_mask_and_grayscale(img):
    chain = build_chain((OperatorSpec("mask"), OperatorSpec("grayscale")))
    assert chain.uses_mask
    y = chain(img)
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])


def test_projection_applies_only_idempotent_ops(img):
    blur_chain = build_chain((OperatorSpec("blur", kernel_size=5, sigma=1.0),))
    assert torch.equal(blur_chain.project_target(img), img)
    gray_chain = build_chain((OperatorSpec("grayscale"),))
    once = gray_chain.project_target(img)
    assert torch.allclose(gray_chain.project_target(once), once, atol=1e-6)


def test_unknown_operator_rejected():
    with pytest.raises(EngineError, match="unknown operator"):
        build_chain((OperatorSpec("sharpen"),))
