"""The faster hash grid computes nerfstudio's HashEncoding, and is switched on for one model only."""

from __future__ import annotations

import copy

import torch
from nerfstudio.field_components.encodings import HashEncoding
from torch import nn

from relationfield.hash_grid import FastHashEncoding, speed_up_hash_grids


def _grid(levels: int = 6, log2_size: int = 10) -> HashEncoding:
    torch.manual_seed(0)
    grid = HashEncoding(num_levels=levels, min_res=4, max_res=96, log2_hashmap_size=log2_size, implementation="torch")
    with torch.no_grad():
        grid.hash_table.uniform_(-1, 1)  # nerfstudio's 1e-3 init would hide small differences
    return grid


def test_same_features_and_gradients_as_nerfstudio():
    stock = _grid()
    fast = copy.deepcopy(stock)
    assert speed_up_hash_grids(fast) == 1 and type(fast) is FastHashEncoding
    # random points, grid vertices (ceiling = floor) and the cube's faces
    corners = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.25, 0.5, 1.0], [0.0, 0.75, 0.5]])
    points = torch.cat([torch.rand(500, 3), corners]).reshape(21, 24, 3)
    expected, got = stock(points), fast(points)
    assert got.shape == expected.shape == (21, 24, stock.get_out_dim())
    assert torch.allclose(got, expected, atol=1e-6)
    weights = torch.randn_like(expected)
    (grad_stock,) = torch.autograd.grad((expected * weights).sum(), stock.hash_table)
    (grad_fast,) = torch.autograd.grad((got * weights).sum(), fast.hash_table)
    assert grad_stock.abs().sum() > 0
    assert torch.allclose(grad_fast, grad_stock, atol=1e-5)
    assert set(fast.state_dict()) == set(stock.state_dict())  # checkpoints load into either


def test_only_the_given_model_is_switched():
    shared = _grid(4)
    model = nn.Sequential(shared, nn.Linear(8, 2))
    other = nn.Sequential(_grid(4), nn.Linear(8, 2))
    holder = nn.ModuleDict({"again": shared})  # the same instance held twice, as nerfacto's field does
    assert speed_up_hash_grids(model) == 1
    assert type(holder["again"]) is FastHashEncoding  # identity kept, so every holder sees the switch
    assert type(other[0]) is HashEncoding and HashEncoding.pytorch_fwd is not FastHashEncoding.pytorch_fwd
    assert speed_up_hash_grids(model) == 0  # already switched
