"""A faster pure-torch hash grid: nerfstudio's ``HashEncoding`` function and parameters, computed with fewer ops.

nerfstudio's torch back end (used when tiny-cuda-nn is absent, e.g. on a CPU) hashes each of the 8 cell
corners on its own (three int64 multiplications, two xors and a modulo each), gathers 8 times, scatters
gradients with indexing's slow backward and interpolates in 7 lerps. :class:`FastHashEncoding` multiplies
each coordinate's floor and ceiling by its prime once, combines the corners with broadcast xors, reduces
with a mask (the table size is a power of two, so it equals the modulo), gathers the 8 corners at once,
scatters their gradients with one ``index_add_`` and sums them with trilinear weights. Same hash table
(``hash_table``, same layout), same function up to float rounding, so a checkpoint trained with either
loads into the other.

:func:`speed_up_hash_grids` switches the torch hash grids of one model to it; other models, and nerfstudio's
class itself, are left alone.
"""

from __future__ import annotations

import torch
from nerfstudio.field_components.encodings import HashEncoding
from torch import Tensor, nn

__all__ = ["FastHashEncoding", "speed_up_hash_grids"]

_PRIMES = (1, 2654435761, 805459861)  # Instant-NGP's, as nerfstudio's hash_fn uses them


class _Gather(torch.autograd.Function):
    """``table[index]`` whose backward is one ``index_add_``: about twice as fast on a CPU as indexing's
    backward (``index_put_`` with accumulation), same sums up to float rounding."""

    @staticmethod
    def forward(ctx, table: Tensor, index: Tensor) -> Tensor:
        ctx.save_for_backward(index)
        ctx.rows = table.shape[0]
        return table.index_select(0, index.reshape(-1)).reshape(*index.shape, table.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        (index,) = ctx.saved_tensors
        table_grad = grad.new_zeros(ctx.rows, grad.shape[-1])
        table_grad.index_add_(0, index.reshape(-1), grad.reshape(-1, grad.shape[-1]))
        return table_grad, None


class FastHashEncoding(HashEncoding):
    """nerfstudio's multi-resolution hash encoding with a faster torch forward (see the module docstring)."""

    def pytorch_fwd(self, in_tensor: Tensor) -> Tensor:
        assert in_tensor.shape[-1] == 3
        batch = in_tensor.shape[:-1]
        points = in_tensor.reshape(-1, 1, 3)
        scaled = points * self.scalings.view(-1, 1).to(points)  # [N, L, 3]
        floor = torch.floor(scaled)
        offset = scaled - floor  # weight of the ceiling corner on each axis
        primes = torch.tensor(_PRIMES, dtype=torch.int64, device=points.device)
        ends = torch.stack([floor.to(torch.int64), torch.ceil(scaled).to(torch.int64)]) * primes  # [2, N, L, 3]
        x, y, z = ends[..., 0], ends[..., 1], ends[..., 2]
        # corner (i, j, k) takes the floor (0) or the ceiling (1) on each axis; broadcasting builds all 8
        hashed = torch.bitwise_xor(torch.bitwise_xor(x[:, None, None], y[None, :, None]), z[None, None, :])
        hashed = (hashed & (self.hash_table_size - 1)) + self.hash_offset.to(points.device)  # [2, 2, 2, N, L]
        w = torch.stack([1 - offset, offset])  # [2, N, L, 3]
        weights = w[:, None, None, ..., 0] * w[None, :, None, ..., 1] * w[None, None, :, ..., 2]
        features = _Gather.apply(self.hash_table, hashed.reshape(8, *hashed.shape[3:]))  # [8, N, L, F]
        encoded = (features * weights.reshape(8, *weights.shape[3:], 1).to(features.dtype)).sum(dim=0)
        return encoded.reshape(*batch, self.num_levels * self.features_per_level)


def speed_up_hash_grids(module: nn.Module) -> int:
    """Switch every torch-backed ``HashEncoding`` inside ``module`` to :class:`FastHashEncoding`; returns how many.

    The instances keep their identity (nerfacto's field holds its grid twice, as ``mlp_base_grid`` and inside
    ``mlp_base``) and their parameters; only their class changes. tiny-cuda-nn grids are left as they are.
    """
    switched = 0
    for child in module.modules():
        if type(child) is HashEncoding and child.tcnn_encoding is None:
            child.__class__ = FastHashEncoding
            switched += 1
    return switched
