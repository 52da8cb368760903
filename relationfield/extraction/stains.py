"""Stains: small nodes that lie flat in the surface of a much larger touching node, merged into it.

Where the field's features blend at contacts (the floor round a sofa's feet, the wall behind a chair),
clustering every surface point finds small dense clusters that are patches of the floor or the wall with
the neighbour's label. They have no thickness of their own: every point lies in the plane of the large
node around them. Real objects on a surface stand out of it by their own height (a 3 cm book lying on a
desk, a framed picture on a wall), so a node is a stain only when its points are all within a fraction
of a voxel of that plane, plus the plane's own roughness where the capture's depth is noisy.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from relationfield.extraction.clustering import box_gap, node_boxes

__all__ = ["absorb_stains", "plane_spread"]

HOST_RATIO = 4
"""A host has at least this many times the stain's points."""
PLANE_POINTS = 64
"""The host's points nearest the node's centre that give the plane (the floor under a table can be seen
only beside the stain)."""
ROUGHNESS_MARGIN = 1.5
"""A stain on a rough host may be this many times as rough as the host's points round it (both are
quantiles of few points)."""
MAX_HOST_ROUGHNESS = 0.5
"""Hosts whose points round the stain are rougher than this many voxels are not planes (a sofa's seat
and back): nothing is a stain on them."""


def absorb_stains(world: np.ndarray, labels: np.ndarray, voxel: float, stain_voxels: float) -> np.ndarray:
    """Node id per point after merging every stain into its host (``stain_voxels`` <= 0: unchanged).

    A node is a stain on a touching node (boxes at most two voxels apart) with at least ``HOST_RATIO``
    times its points when the host's ``PLANE_POINTS`` points nearest the node's centre form a plane and
    the node's points lie within ``stain_voxels`` voxels of it (90th percentiles), beyond ``ROUGHNESS_MARGIN``
    times the host's own roughness.
    """
    ids, counts = np.unique(labels[labels >= 0], return_counts=True)
    if stain_voxels <= 0 or len(ids) < 2:
        return labels
    members = {int(i): np.nonzero(labels == i)[0] for i in ids}
    boxes = node_boxes(world, labels, members)
    size = dict(zip(ids.tolist(), counts.tolist()))
    trees: dict[int, cKDTree] = {}
    out = labels.copy()
    for small in sorted(size, key=size.get):
        touching = [i for i in size if box_gap(*boxes[small], *boxes[i]) <= 2 * voxel]
        hosts = [i for i in touching if size[i] >= HOST_RATIO * size[small]]
        own = world[members[small]]
        for host in sorted(hosts, key=lambda i: -size[i]):
            if host not in trees:
                trees[host] = cKDTree(world[members[host]])
            nearest = trees[host].query(own.mean(0), k=min(PLANE_POINTS, size[host]))[1]
            near = world[members[host][np.atleast_1d(nearest)]]
            roughness, spread = plane_spread(near, own)
            flat = spread <= ROUGHNESS_MARGIN * roughness + stain_voxels * voxel
            if flat and roughness <= MAX_HOST_ROUGHNESS * voxel:
                out[out == small] = host  # smallest first: a host that is a stain itself takes it along
                break
    return out


def plane_spread(plane_points: np.ndarray, points: np.ndarray, quantile: float = 0.9) -> tuple[float, float]:
    """(roughness, spread): the ``quantile`` of the distances of ``plane_points`` and of ``points`` to the
    least-squares plane of ``plane_points``."""
    centre = plane_points.mean(0)
    normal = np.linalg.svd(plane_points - centre, full_matrices=False)[2][-1]
    roughness = float(np.quantile(np.abs((plane_points - centre) @ normal), quantile))
    spread = float(np.quantile(np.abs((points - centre) @ normal), quantile))
    return roughness, spread
