"""Stains: flat patches of a surface that clustered on their own merge into it; objects on it do not."""

from __future__ import annotations

import numpy as np

from relationfield.extraction.stains import absorb_stains, plane_spread

VOXEL = 0.05


def _floor(rng: np.random.Generator, noise: float = 0.0, count: int = 4000) -> np.ndarray:
    xy = rng.uniform(-1.0, 1.0, (count, 2))
    return np.column_stack([xy, noise * rng.standard_normal(count)])


def _patch(rng: np.random.Generator, centre: tuple[float, float], noise: float = 0.0, count: int = 40) -> np.ndarray:
    xy = np.asarray(centre) + rng.uniform(-0.1, 0.1, (count, 2))
    return np.column_stack([xy, noise * rng.standard_normal(count)])


def _book(rng: np.random.Generator, centre: tuple[float, float], height: float, count: int = 40) -> np.ndarray:
    """Points on the sides of a 20 cm box of ``height`` standing on the floor (its top hidden by another)."""
    side = rng.integers(0, 4, count)
    t = rng.uniform(-0.1, 0.1, count)
    x = np.where(side < 2, t, np.where(side == 2, -0.1, 0.1))
    y = np.where(side < 2, np.where(side == 0, -0.1, 0.1), t)
    return np.column_stack([x + centre[0], y + centre[1], rng.uniform(0.0, height, count)])


def _labels(*parts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(parts), np.repeat(np.arange(len(parts)), [len(p) for p in parts])


def test_a_flat_patch_merges_into_the_floor_and_a_thin_book_on_it_does_not():
    rng = np.random.default_rng(0)
    world, labels = _labels(_floor(rng), _patch(rng, (0.5, 0.5)), _book(rng, (-0.5, -0.5), height=0.03))
    out = absorb_stains(world, labels, VOXEL, stain_voxels=0.05)
    assert (out[labels == 1] == 0).all()  # the patch is floor
    assert (out[labels == 2] == 2).all()  # a 3 cm book stands out of it
    assert (out[labels == 0] == 0).all()
    assert (absorb_stains(world, labels, VOXEL, stain_voxels=0.0) == labels).all()  # 0 turns it off


def test_noisy_depth_raises_the_tolerance_by_the_surface_roughness():
    rng = np.random.default_rng(1)
    noise = 0.01  # a depth sensor's centimetre
    world, labels = _labels(_floor(rng, noise), _patch(rng, (0.5, 0.5), noise), _book(rng, (-0.5, -0.5), height=0.08))
    roughness, spread = plane_spread(world[labels == 0][:200], world[labels == 1])
    assert spread > 0.05 * VOXEL  # the patch alone would not pass the fixed tolerance ...
    out = absorb_stains(world, labels, VOXEL, stain_voxels=0.05)
    assert (out[labels == 1] == 0).all()  # ... but it is as rough as the floor round it
    assert (out[labels == 2] == 2).all()


def test_nothing_is_a_stain_on_a_rough_host_or_on_a_small_one():
    rng = np.random.default_rng(2)
    foliage = rng.uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 0.3], (4000, 3))  # a plant's leaves: no plane
    leaf = _patch(rng, (0.0, 0.0)) + [0.0, 0.0, 0.15]
    world, labels = _labels(foliage, leaf)
    assert (absorb_stains(world, labels, VOXEL, stain_voxels=0.05) == labels).all()

    small_host, patch = _floor(rng, count=100) * [0.2, 0.2, 0], _patch(rng, (0.0, 0.0), count=40)
    world, labels = _labels(small_host, patch)  # fewer than four times the patch's points: no host
    assert (absorb_stains(world, labels, VOXEL, stain_voxels=0.05) == labels).all()


def test_a_patch_far_from_the_surface_is_not_merged():
    rng = np.random.default_rng(3)
    floor = _floor(rng)
    shelf_board = _patch(rng, (0.5, 0.5)) + [0.0, 0.0, 0.8]  # flat and parallel, but 80 cm up: no contact
    world, labels = _labels(floor, shelf_board)
    assert (absorb_stains(world, labels, VOXEL, stain_voxels=0.05) == labels).all()
