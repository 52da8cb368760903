"""The relation head's inputs: the offset z - x, raw and as Fourier features."""

from __future__ import annotations

import torch

from relationfield.heads import GridSpec, RelationHead

SMALL = GridSpec(num_levels=4, min_res=8, max_res=64, log2_hashmap_size=12, features_per_level=2, hidden_dim=32)


def test_offset_features_widen_the_input_and_default_to_the_raw_offset():
    plain = RelationHead(5, SMALL, "torch")
    fourier = RelationHead(5, SMALL, "torch", offset_frequencies=6)
    grid = plain.encoding.get_out_dim()
    assert plain.mlp.in_dim == 2 * grid + 3
    assert fourier.mlp.in_dim == 2 * grid + 3 + 6 * 6
    x, z = torch.rand(7, 3), torch.rand(7, 3)
    assert fourier(x, z).shape == (7, 5) and plain(x[:, None], z[:, None]).shape == (7, 1, 5)
    # the scales are not state: checkpoints of both heads hold the same keys
    assert set(fourier.state_dict()) == set(plain.state_dict())


def near_or_far_accuracy(offset_frequencies: int) -> float:
    """Train a head for 200 steps to tell z 1-2 hundredths (normalised units) from x from z 3-5 hundredths
    away, anywhere in the room (only the offset tells), and return its accuracy on fresh samples."""
    torch.manual_seed(0)
    head = RelationHead(2, SMALL, "torch", offset_frequencies=offset_frequencies)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)

    def batch(n: int):
        x = 0.2 + 0.6 * torch.rand(n, 3)
        near = torch.rand(n) < 0.5
        radius = torch.where(near, 0.01 + 0.01 * torch.rand(n), 0.03 + 0.02 * torch.rand(n))
        direction = torch.nn.functional.normalize(torch.randn(n, 3), dim=-1)
        return x, x + direction * radius[:, None], near.long()

    for _ in range(200):
        x, z, label = batch(256)
        loss = torch.nn.functional.cross_entropy(head(x, z), label)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, z, label = batch(2000)
    with torch.no_grad():
        return (head(x, z).argmax(-1) == label).float().mean().item()


def test_fourier_offset_features_tell_near_from_far():
    fourier, raw = near_or_far_accuracy(6), near_or_far_accuracy(0)
    assert fourier > 0.95, fourier  # chance is 0.5
    assert fourier > raw + 0.05, (fourier, raw)  # the raw offset alone learns it more slowly


def test_positions_and_queries_are_encoded_before_broadcasting_with_the_same_features():
    """Training's z is one point per ray for the ray's k samples, the export pairs m subject points with q
    object points: each distinct point is encoded once and the result is that of the expanded inputs."""
    torch.manual_seed(0)
    head = RelationHead(5, SMALL, "torch", offset_frequencies=6)
    x, z = torch.rand(7, 4, 3), torch.rand(7, 1, 3)
    encoded: list[int] = []
    head.encoding.register_forward_hook(lambda module, inputs, output: encoded.append(len(inputs[0])))
    broadcast = head(x, z)
    assert sorted(encoded) == [7, 28]  # z once per ray, x's 7 x 4 samples
    expanded = head(x, z.expand(7, 4, 3))
    assert torch.allclose(broadcast, expanded, atol=1e-6)
    grad_broadcast, grad_expanded = (
        torch.autograd.grad(out.square().sum(), list(head.encoding.parameters())) for out in (broadcast, expanded)
    )
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grad_broadcast, grad_expanded))
    encoded.clear()
    subjects, objects = torch.rand(3, 5, 1, 3), torch.rand(3, 1, 6, 3)
    pairs = head(subjects, objects)
    assert pairs.shape == (3, 5, 6, 5) and sorted(encoded) == [15, 18]
    assert torch.allclose(pairs, head(subjects.expand(3, 5, 6, 3), objects.expand(3, 5, 6, 3)), atol=1e-6)


def test_compositing_before_the_output_layer_gives_the_composited_features():
    """The heads apply their (linear) output layer once per ray to the weighted hidden features: the same
    features and gradients as compositing the per-sample outputs, when the weights sum to one."""
    from relationfield.heads import FeatureHead, composite, topk_samples

    torch.manual_seed(0)
    semantic = FeatureHead(24, SMALL, "torch")
    relation = RelationHead(24, SMALL, "torch", offset_frequencies=6)
    positions, weights = topk_samples(torch.rand(9, 16, 3), torch.rand(9, 16, 1), 4)
    query = torch.rand(9, 1, 3)
    pairs = [
        (semantic.composite(positions, weights), composite(semantic(positions), weights), semantic),
        (relation.composite(positions, query, weights), composite(relation(positions, query), weights), relation),
    ]
    for fast, reference, head in pairs:
        assert fast.shape == reference.shape == (9, 24)
        assert torch.allclose(fast, reference, atol=1e-5)
        target = torch.randn(9, 24)
        params = list(head.parameters())
        grads = [torch.autograd.grad(((out - target) ** 2).sum(), params) for out in (fast, reference)]
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*grads))
