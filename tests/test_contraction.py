"""The faster scene contraction computes nerfstudio's L-inf SceneContraction, and is switched on for one model only."""

from __future__ import annotations

import copy
import math

import torch
from nerfstudio.field_components.spatial_distortions import SceneContraction
from torch import nn

from relationfield.contraction import FastSceneContraction, speed_up_contractions


def test_same_contraction_and_gradients_as_nerfstudio():
    stock = SceneContraction(order=math.inf)
    fast = copy.deepcopy(stock)
    assert speed_up_contractions(fast) == 1 and type(fast) is FastSceneContraction
    torch.manual_seed(0)
    # inside the unit cube, outside it (contracted), on its faces and far away
    edges = torch.tensor([[1.0, 0.2, -0.3], [-1.0, -1.0, 0.5], [0.0, 0.0, 0.0], [30.0, -2.0, 4.0]])
    points = torch.cat([torch.randn(600, 3) * 2.0, edges]).reshape(4, 151, 3)
    inside = (points.abs().amax(-1) < 1).sum()
    assert 0 < inside < points.shape[0] * points.shape[1]  # both branches are exercised
    stock_in, fast_in = points.clone().requires_grad_(True), points.clone().requires_grad_(True)
    expected, got = stock(stock_in), fast(fast_in)
    assert got.shape == expected.shape and torch.equal(got, expected)
    assert got.abs().amax() <= 2.0 and got.abs().amax() > 1.0
    weights = torch.randn_like(expected)
    (expected * weights).sum().backward()
    (got * weights).sum().backward()
    # equal_nan: at the origin both take where()'s 0 / 0 in the unused branch, as nerfstudio does
    assert torch.allclose(fast_in.grad, stock_in.grad, atol=1e-6, equal_nan=True)


def test_other_orders_and_models_are_left_alone():
    l2 = SceneContraction(order=None)
    shared = SceneContraction(order=math.inf)
    model = nn.ModuleDict({"field": nn.ModuleDict({"warp": shared}), "proposal": nn.ModuleDict({"warp": shared})})
    other = nn.ModuleDict({"warp": SceneContraction(order=math.inf), "l2": l2})
    assert speed_up_contractions(model) == 1  # one instance, held twice (nerfacto's field and proposals)
    assert type(model["proposal"]["warp"]) is FastSceneContraction
    assert type(other["warp"]) is SceneContraction and type(other["l2"]) is SceneContraction
    assert speed_up_contractions(other) == 1 and type(l2) is SceneContraction  # L2 contracts to a ball: stock code
    assert speed_up_contractions(model) == 0  # already switched
