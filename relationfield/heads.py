"""The three feature heads: semantic f(x), instance h(x) and relation g(x, z).

Each head has its own multi-resolution hash grid (nerfstudio's ``HashEncoding``, with the faster torch forward of
:mod:`relationfield.hash_grid`) and MLP, built with
``implementation`` "tcnn" (tiny-cuda-nn, when installed) or "torch" (nerfstudio falls back to torch when
tcnn is absent). Heads take positions already normalised to [0, 1] (contracted scene space) and are
evaluated only at the few highest-weight samples of each ray; see :func:`topk_samples` and
:func:`composite`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from nerfstudio.field_components.mlp import MLP
from torch import Tensor, nn

from relationfield.hash_grid import FastHashEncoding

Implementation = Literal["tcnn", "torch"]


@dataclass(frozen=True)
class GridSpec:
    """Hash grid and MLP sizes of one head."""

    num_levels: int = 12
    min_res: int = 16
    max_res: int = 512
    log2_hashmap_size: int = 19
    features_per_level: int = 4
    hidden_dim: int = 128
    num_layers: int = 2


def _grid(spec: GridSpec, implementation: Implementation) -> FastHashEncoding:
    return FastHashEncoding(
        num_levels=spec.num_levels,
        min_res=spec.min_res,
        max_res=spec.max_res,
        log2_hashmap_size=spec.log2_hashmap_size,
        features_per_level=spec.features_per_level,
        implementation=implementation,
    )


class FeatureHead(nn.Module):
    """Hash grid -> MLP -> ``out_dim`` features."""

    def __init__(self, out_dim: int, spec: GridSpec, implementation: Implementation) -> None:
        super().__init__()
        self.encoding = _grid(spec, implementation)
        self.mlp = MLP(
            in_dim=self.encoding.get_out_dim(),
            num_layers=spec.num_layers,
            layer_width=spec.hidden_dim,
            out_dim=out_dim,
            implementation="torch",
        )

    def forward(self, positions: Tensor) -> Tensor:
        """Features at ``positions [..., 3]``."""
        return self.mlp(self.encoding(positions.reshape(-1, 3))).reshape(*positions.shape[:-1], -1).float()

    def composite(self, positions: Tensor, weights: Tensor) -> Tensor:
        """``composite(self(positions), weights)`` for ``[N, k, 3]`` samples whose weights sum to one per ray,
        with the output layer applied once per ray (see :func:`composite_through_last_layer`)."""
        inputs = self.encoding(positions.reshape(-1, 3))
        return composite_through_last_layer(self.mlp, inputs, positions.shape[:-1], weights)


class RelationHead(nn.Module):
    """g(x, z): the relation of the object at ``x`` to the object at the query position ``z``.

    The input is the hash encoding of x, the hash encoding of z (the same grid) and the offset z - x, so
    spatial predicates ("higher than", "standing on") can use geometry directly. With
    ``offset_frequencies`` > 0 the offset also enters as sines and cosines at that many octaves (periods
    from 2 down to 2 / 2**(F-1) normalised units): a raw offset of a few hundredths is easy for the MLP
    to ignore, its Fourier features are not.
    """

    def __init__(
        self,
        out_dim: int,
        spec: GridSpec,
        implementation: Implementation,
        offset_frequencies: int = 0,
    ) -> None:
        super().__init__()
        self.encoding = _grid(spec, implementation)
        grid_dim = self.encoding.get_out_dim()
        self.register_buffer(
            "offset_scales", torch.pi * 2.0 ** torch.arange(offset_frequencies, dtype=torch.float32), persistent=False
        )
        self.mlp = MLP(
            in_dim=2 * grid_dim + 3 + 6 * offset_frequencies,
            num_layers=spec.num_layers + 1,
            layer_width=spec.hidden_dim,
            out_dim=out_dim,
            implementation="torch",
        )

    def encode_query(self, query: Tensor) -> Tensor:
        """Hash encoding of positions ``[..., 3]`` (cache a query's when it serves many points)."""
        return self.encoding(query.reshape(-1, 3)).reshape(*query.shape[:-1], -1)

    def forward(self, positions: Tensor, query: Tensor, query_encoding: Tensor | None = None) -> Tensor:
        """Relation features of ``positions [..., 3]`` to ``query [..., 3]``, the two broadcast together.

        Each is encoded before broadcasting, so pass them unexpanded: training's one z per ray serves all
        the ray's samples, and the export's m subject points x q object points cost m + q grid lookups.
        ``query_encoding``: the query's encoding when the caller has it.
        """
        inputs, shape = self._inputs(positions, query, query_encoding)
        return self.mlp(inputs).reshape(*shape, -1).float()

    def composite(self, positions: Tensor, query: Tensor, weights: Tensor) -> Tensor:
        """``composite(self(positions, query), weights)`` for ``[N, k, 3]`` samples whose weights sum to one per
        ray, with the output layer applied once per ray (see :func:`composite_through_last_layer`)."""
        inputs, shape = self._inputs(positions, query, None)
        return composite_through_last_layer(self.mlp, inputs, shape, weights)

    def _inputs(self, positions: Tensor, query: Tensor, query_encoding: Tensor | None) -> tuple[Tensor, torch.Size]:
        """The MLP's input rows (x's and z's encodings, the offset and its Fourier features) and their shape."""
        shape = torch.broadcast_shapes(positions.shape[:-1], query.shape[:-1])
        if query_encoding is None:
            query_encoding = self.encode_query(query)
        enc_x = self.encode_query(positions).expand(*shape, -1).reshape(-1, query_encoding.shape[-1])
        enc_z = query_encoding.expand(*shape, -1).reshape(-1, query_encoding.shape[-1])
        offset = (query - positions).expand(*shape, 3).reshape(-1, 3).float()
        angles = (offset[:, :, None] * self.offset_scales).reshape(len(offset), -1)
        parts = [enc_x, enc_z.to(enc_x.dtype), offset, torch.sin(angles), torch.cos(angles)]
        return torch.cat([part.to(enc_x.dtype) for part in parts], dim=-1), shape


def composite_through_last_layer(mlp: MLP, inputs: Tensor, shape: torch.Size, weights: Tensor) -> Tensor:
    """``composite(mlp(inputs).reshape(*shape, -1), weights)`` with the output layer after the weighted sum.

    The heads' output layer is linear (no output activation), so with weights summing to one per ray
    ``sum_k w_k (W h_k + b) = W (sum_k w_k h_k) + b``: the widest layer (to the 384-512 dimensions of the text
    embeddings) then runs once per ray instead of once per sample.
    """
    hidden = inputs
    for layer in mlp.layers[:-1]:  # nerfstudio's MLP without skip connections: layer, activation, ...
        hidden = mlp.activation(layer(hidden))
    pooled = composite(hidden.reshape(*shape, -1), weights)
    return mlp.layers[-1](pooled).float()


def topk_samples(positions: Tensor, weights: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` highest-weight samples of each ray, detached from the geometry.

    Args:
        positions: [N, S, 3] sample positions.
        weights: [N, S, 1] rendering weights.

    Returns:
        positions [N, k, 3] and weights [N, k, 1] normalised to sum to one per ray (rays with no weight
        get uniform weights), both detached so feature losses cannot deform the density field.
    """
    k = min(k, weights.shape[1])
    w = weights.detach()[..., 0]
    top_w, top_i = torch.topk(w, k, dim=-1)
    top_p = torch.gather(positions.detach(), 1, top_i[..., None].expand(-1, -1, 3))
    total = top_w.sum(dim=-1, keepdim=True)
    norm = torch.where(total > 1e-8, top_w / total.clamp_min(1e-8), torch.full_like(top_w, 1.0 / k))
    return top_p, norm[..., None]


def composite(features: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum over samples: [N, k, D] x [N, k, 1] -> [N, D]."""
    return (features * weights).sum(dim=-2)
