"""Adaptive rotated convolution: plain conv at angle 0, exact quarter turns, gradients."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from georefseg.models.layers import AdaptiveRotatedConv2d, kernel_rotation_matrix


def test_angle_zero_is_the_identity():
    assert torch.allclose(kernel_rotation_matrix(torch.tensor(0.0)), torch.eye(9))


def test_quarter_turn_equals_rotating_the_kernel_array():
    k = torch.randn(4, 3, 3, dtype=torch.float64)
    for turns in (1, 2, 3, -1):
        rot = kernel_rotation_matrix(torch.tensor(turns * math.pi / 2, dtype=torch.float64))
        rotated = (rot @ k.reshape(4, 9, 1)).reshape(4, 3, 3)
        # positive angles turn the kernel counter-clockwise as seen in the image (y down)
        assert torch.allclose(rotated, torch.rot90(k, turns, dims=(1, 2)), atol=1e-12)


def test_small_angles_interpolate_and_keep_the_centre():
    rot = kernel_rotation_matrix(torch.tensor([0.3, -0.5]))
    assert torch.allclose(rot.sum(-1), torch.ones(2, 9), atol=1e-6)  # weights of each tap sum to 1
    assert torch.allclose(rot[:, 4], F.one_hot(torch.tensor(4), 9).float().expand(2, 9))


def _fixed_routing(conv: AdaptiveRotatedConv2d, angle: float) -> None:
    with torch.no_grad():
        conv.rounting_func.fc_theta.weight.zero_()
        conv.rounting_func.fc_alpha.weight.zero_()
        conv.rounting_func.fc_alpha.bias.fill_(40.0)  # sigmoid → 1
    conv.rounting_func.forward = lambda x: (torch.ones(x.shape[0], 1), torch.full((x.shape[0], 1), angle))


def test_arc_with_angle_zero_equals_plain_convolution():
    conv = AdaptiveRotatedConv2d(4, 5, kernel_number=1).eval()
    _fixed_routing(conv, 0.0)
    x = torch.randn(3, 4, 16, 16)
    expected = F.conv2d(x, conv.weight[0], padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-5)


def test_arc_quarter_turn_commutes_with_rotating_the_image():
    conv = AdaptiveRotatedConv2d(2, 3, kernel_number=1).eval()
    x = torch.randn(1, 2, 12, 12)
    _fixed_routing(conv, 0.0)
    plain = conv(x)
    _fixed_routing(conv, math.pi / 2)
    turned = conv(torch.rot90(x, 1, dims=(2, 3)))
    assert torch.allclose(turned, torch.rot90(plain, 1, dims=(2, 3)), atol=1e-5)


def test_gradients_reach_the_routing_function():
    conv = AdaptiveRotatedConv2d(4, 4, kernel_number=3)
    x = torch.randn(2, 4, 10, 10)
    conv(x).square().mean().backward()
    r = conv.rounting_func
    for p in (r.dwc.weight, r.fc_alpha.weight, r.fc_theta.weight, conv.weight):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_each_sample_gets_its_own_kernel():
    conv = AdaptiveRotatedConv2d(3, 3, kernel_number=2).eval()
    a, b = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    both = conv(torch.cat([a, b]))
    assert torch.allclose(both[:1], conv(a), atol=1e-5) and torch.allclose(both[1:], conv(b), atol=1e-5)
