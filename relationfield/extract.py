"""3D scene-graph extraction from a trained RelationField.

1. Surface points: render the expected depth of (a spread of) training views, keep pixels with enough
   accumulation, and deduplicate the 3D points on a voxel grid.
2. Instances: HDBSCAN on the points' instance features (a subsample; the rest join the nearest
   cluster), clusters split into spatially connected parts, tiny parts dropped, and parts whose instance
   features and boxes agree merged back.
3. Labels: each node's mean semantic feature against the object vocabulary (top-k softmax scores).
4. Edges: every node pair within ``max_distance`` (or all pairs): relation features g(x, z) with x
   sampled on the subject and z on the object, averaged, scored against the predicate vocabulary and
   "none".

Everything is batched; memory grows with the number of points and the number of candidate pairs, never
with their product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from relationfield.query import FieldQuery
from relationfield.scene_graph import SceneGraph, SceneLink, SceneNode
from relationfield.vocab import NONE_PREDICATE


@dataclass
class ExtractionConfig:
    """Knobs of scene-graph extraction (defaults suit the synthetic scenes and room-sized captures)."""

    max_views: int = 40
    """Training views rendered for surface points (evenly spread)."""
    view_pixels: int = 4096
    """Larger views are rendered downscaled to about this many pixels (0 = full resolution)."""
    min_accumulation: float = 0.5
    """Pixels whose rendered opacity is lower are not surface points."""
    voxels_per_side: int = 240
    """Deduplication grid: the points' bounding box is split into this many voxels along its longest side."""
    cluster_points: int = 40000
    """Points HDBSCAN clusters (a random subsample; the others take the label of their nearest neighbour)."""
    cluster_dims: int = 6
    """PCA dimensions of the clustering features that HDBSCAN sees."""
    min_cluster_size: int = 10
    """HDBSCAN's min_cluster_size on that subsample (small, so that cups and books survive)."""
    min_samples: int = 10
    """HDBSCAN's min_samples: higher values call more of the in-between points noise."""
    noise_min_cluster_size: int = 20
    """Second pass: HDBSCAN's min_cluster_size (and min_samples) on the points the first pass called noise.
    Small objects (a book in a shelf) are too few in the first subsample and end up there; 0 turns the
    pass off."""
    new_object_similarity: float = 0.8
    """A second-pass cluster becomes a new object only if the cosine similarity of its mean clustering
    feature to every first-pass cluster's is below this (otherwise it is the fringe of a known object,
    e.g. the seam where two walls meet, and stays noise)."""
    min_node_points: int = 10
    """Nodes with fewer points are dropped."""
    merge_similarity: float = 0.95
    """Touching parts whose mean clustering features have at least this cosine similarity are merged
    (high: walls that meet at a corner stay apart)."""
    label_top_k: int = 10
    """Label scores kept per node."""
    label_temperature: float = 0.02
    """Softmax temperature of label scores."""
    predicate_top_k: int = 10
    """Predicate scores kept per link ("none" is always kept)."""
    predicate_temperature: float = 0.05
    """Softmax temperature of predicate scores."""
    max_distance: float = 3.0
    """Candidate pairs: nodes whose boxes are at most this far apart (world units, metres for synth)."""
    all_pairs: bool = False
    """Score every ordered pair of nodes instead."""
    subject_samples: int = 48
    """Points sampled on the subject per pair."""
    object_samples: int = 12
    """Query positions sampled on the object per pair."""
    pairs_per_batch: int = 32
    """Pairs scored per batch (bounds memory)."""
    seed: int = 0


@dataclass
class Extraction:
    """The extracted graph plus the points behind it (nerfstudio frame and world frame)."""

    graph: SceneGraph
    points_world: np.ndarray
    colors: np.ndarray
    point_node: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


Progress = Callable[[str, int], Callable[[int], None]]


def no_progress(_: str, __: int) -> Callable[[int], None]:
    return lambda _step: None


@torch.no_grad()
def surface_points(query: FieldQuery, config: ExtractionConfig, progress: Progress) -> tuple[Tensor, Tensor]:
    """Deduplicated surface points (nerfstudio frame) and their colours from rendered training views."""
    model = query.model
    cameras = query.pipeline.datamanager.train_dataset.cameras
    count = len(cameras)
    views = np.unique(np.linspace(0, count - 1, min(config.max_views, count)).round().astype(int))
    points, colors = [], []
    advance = progress("rendering surface points", len(views))
    with model.rendering(features=False):
        for view in views.tolist():
            camera = cameras[view : view + 1]  # indexing makes a copy, safe to rescale
            scale = render_scale(int(camera.width) * int(camera.height), config.view_pixels)
            if scale < 1.0:
                camera.rescale_output_resolution(scale)
            bundle = camera.generate_rays(camera_indices=0).to(query.device)
            outputs = model.get_outputs_for_camera_ray_bundle(bundle)
            keep = outputs["accumulation"][..., 0] > config.min_accumulation
            xyz = bundle.origins + bundle.directions * outputs["expected_depth"]
            points.append(xyz[keep].cpu())
            colors.append(outputs["rgb"][keep].clamp(0, 1).cpu())
            advance(1)
    if not points or sum(len(p) for p in points) == 0:
        return torch.zeros(0, 3), torch.zeros(0, 3)
    return voxel_dedup(torch.cat(points), torch.cat(colors), config.voxels_per_side)


def render_scale(pixels: int, view_pixels: int) -> float:
    """Resolution factor that brings a view of ``pixels`` pixels down to about ``view_pixels`` (never up)."""
    if view_pixels <= 0 or pixels <= view_pixels:
        return 1.0
    return (view_pixels / pixels) ** 0.5


def voxel_dedup(points: Tensor, colors: Tensor, voxels_per_side: int) -> tuple[Tensor, Tensor]:
    """One point per occupied voxel (the mean of the points in it)."""
    low, high = points.min(0).values, points.max(0).values
    voxel = float((high - low).max()) / voxels_per_side or 1.0
    keys = torch.floor((points - low) / voxel).long()
    _, inverse = torch.unique(keys, dim=0, return_inverse=True)
    count = torch.bincount(inverse).float()[:, None]
    mean_p = torch.zeros(len(count), 3).index_add_(0, inverse, points) / count
    mean_c = torch.zeros(len(count), 3).index_add_(0, inverse, colors) / count
    return mean_p, mean_c


def clustering_features(instance: Tensor, semantic: Tensor, semantic_dims: int = 16) -> Tensor:
    """Instance features joined with the semantic features' main components (both halves unit-norm).

    Instance features separate objects that share a label (two identical chairs); semantic features
    separate touching objects of different kinds (a cup on a table) even when the instance head is
    still young. The semantic part is reduced with PCA so both halves weigh the same.
    """
    if len(semantic) < 2:
        return F.normalize(instance, dim=-1)
    centred = semantic.float() - semantic.float().mean(0)
    q = min(semantic_dims, centred.shape[1], len(centred) - 1)
    _, _, v = torch.pca_lowrank(centred, q=q, center=False)
    reduced = F.normalize(centred @ v, dim=-1)
    return torch.cat([F.normalize(instance.float(), dim=-1), reduced], dim=-1) / 2**0.5


def reduce_dims(features: Tensor, dims: int) -> np.ndarray:
    """The ``dims`` main components of ``features`` (PCA), as float64 numpy for HDBSCAN's trees.

    Few dimensions keep HDBSCAN's space-partitioning trees fast and make its densities meaningful; the
    instance and semantic features of a trained field vary along few directions anyway.
    """
    centred = features.double() - features.double().mean(0)
    dims = max(1, min(dims, centred.shape[1], len(centred)))
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:dims].T).cpu().numpy()


def cluster_instances(features: Tensor, config: ExtractionConfig) -> np.ndarray:
    """HDBSCAN cluster id per point (-1 = noise) from (unit-norm) clustering features.

    HDBSCAN runs on a random subsample of ``cluster_points`` points in ``cluster_dims`` PCA dimensions;
    every other point takes the label of its nearest subsampled neighbour in that space. A second pass
    clusters what the first called noise and keeps the clusters that are unlike every first-pass cluster
    (:func:`recluster_noise`).
    """
    n = len(features)
    if n == 0:
        return np.zeros(0, dtype=int)
    reduced = reduce_dims(features, config.cluster_dims)
    labels = _hdbscan_labels(reduced, np.arange(n), config.min_cluster_size, config.min_samples, config)
    if config.noise_min_cluster_size > 0 and (labels >= 0).any():
        labels = recluster_noise(reduced, features.numpy(), labels, config)
    return labels


def _hdbscan_labels(
    reduced: np.ndarray, members: np.ndarray, min_size: int, min_samples: int, config: ExtractionConfig
) -> np.ndarray:
    """HDBSCAN labels of ``reduced[members]`` (subsampled to ``cluster_points``; the rest take their nearest
    sampled neighbour's label)."""
    import hdbscan
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(config.seed)
    sample = np.sort(rng.choice(members, size=min(len(members), config.cluster_points), replace=False))
    if len(sample) <= min_size:
        return np.full(len(members), -1)
    sub_labels = hdbscan.HDBSCAN(min_cluster_size=min_size, min_samples=min_samples).fit_predict(reduced[sample])
    if (sub_labels < 0).all():
        return np.full(len(members), -1)
    _, nearest = cKDTree(reduced[sample]).query(reduced[members], k=1)
    return sub_labels[nearest]


def recluster_noise(
    reduced: np.ndarray, features: np.ndarray, labels: np.ndarray, config: ExtractionConfig
) -> np.ndarray:
    """Cluster the noise points again; clusters unlike every existing one become new clusters.

    Small objects have too few points in the first pass's subsample to form a cluster, so their points
    end up as noise, where they are dense again.
    """
    noise = np.nonzero(labels < 0)[0]
    size = config.noise_min_cluster_size
    if len(noise) <= size:
        return labels
    sub = _hdbscan_labels(reduced, noise, size, size, config)
    known = [c for c in np.unique(labels) if c >= 0]
    means = _unit(np.stack([features[labels == c].mean(0) for c in known]))
    out = labels.copy()
    next_id = int(labels.max()) + 1
    for c in np.unique(sub[sub >= 0]):
        members = noise[sub == c]
        if float((means @ _unit(features[members].mean(0))).max()) < config.new_object_similarity:
            out[members] = next_id
            next_id += 1
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-8)


def split_connected(points: np.ndarray, labels: np.ndarray, voxel: float, min_points: int) -> np.ndarray:
    """Split every cluster into spatially connected parts (26-connected voxels); drop small parts."""
    from scipy import ndimage

    out = np.full(len(points), -1)
    next_id = 0
    for cluster in np.unique(labels):
        if cluster < 0:
            continue
        idx = np.nonzero(labels == cluster)[0]
        cells = np.floor((points[idx] - points[idx].min(0)) / voxel).astype(int)
        grid = np.zeros(cells.max(0) + 1, dtype=bool)
        grid[tuple(cells.T)] = True
        components, _ = ndimage.label(grid, structure=np.ones((3, 3, 3)))
        part = components[tuple(cells.T)]
        for value in np.unique(part):
            members = idx[part == value]
            if len(members) >= min_points:
                out[members] = next_id
                next_id += 1
    return out


def _box_gap(a_min: np.ndarray, a_max: np.ndarray, b_min: np.ndarray, b_max: np.ndarray) -> float:
    gap = np.maximum(0.0, np.maximum(a_min - b_max, b_min - a_max))
    return float(np.linalg.norm(gap))


def merge_parts(
    points: np.ndarray, labels: np.ndarray, features: np.ndarray, config: ExtractionConfig, voxel: float
) -> np.ndarray:
    """Merge touching parts whose mean instance features agree (union-find)."""
    ids = [i for i in np.unique(labels) if i >= 0]
    if len(ids) < 2:
        return labels
    means = _unit(np.stack([features[labels == i].mean(0) for i in ids]))
    boxes = [(points[labels == i].min(0), points[labels == i].max(0)) for i in ids]
    parent = list(range(len(ids)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    similarity = means @ means.T
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            if similarity[a, b] >= config.merge_similarity and _box_gap(*boxes[a], *boxes[b]) <= 2 * voxel:
                parent[find(a)] = find(b)
    remap = {ids[i]: find(i) for i in range(len(ids))}
    merged = np.array([remap.get(int(label), -1) for label in labels])
    _, dense = np.unique(merged, return_inverse=True)
    offset = 1 if (merged < 0).any() else 0
    return np.where(merged >= 0, dense - offset, -1)


def _top(scores: Tensor, names: Sequence[str], k: int, always: int | None = None) -> list[tuple[str, float]]:
    order = torch.argsort(scores, descending=True).tolist()
    keep = order[:k]
    if always is not None and always not in keep:
        keep.append(always)
    return [(names[i], float(scores[i])) for i in keep]


@dataclass
class Segmentation:
    """Surface points split into instances (node id per point, -1 = none)."""

    points: Tensor
    """[N, 3] nerfstudio frame."""
    world: np.ndarray
    """[N, 3] the capture's world frame."""
    colors: np.ndarray
    """[N, 3] uint8 rendered colours."""
    labels: np.ndarray
    """[N] node id per point, -1 for points in no node."""
    semantic: Tensor
    instance: Tensor

    @property
    def node_ids(self) -> list[int]:
        return [int(i) for i in np.unique(self.labels) if i >= 0]

    def node_points(self, node_id: int) -> Tensor:
        return self.points[torch.from_numpy(self.labels == node_id)]


def segment(query: FieldQuery, config: ExtractionConfig, progress: Progress = no_progress) -> Segmentation:
    """Surface points of the field, clustered into instances."""
    points, colors = surface_points(query, config, progress)
    world = query.to_world(points).numpy() if len(points) else np.zeros((0, 3))
    rgb = (colors.numpy() * 255).round().astype(np.uint8)
    if len(points) < config.min_node_points:
        none = torch.zeros(len(points), 1)
        return Segmentation(points, world, rgb, np.full(len(points), -1), none, none)
    instance = query.instance(points).cpu()
    semantic = query.semantic(points).cpu()
    extent = float((world.max(0) - world.min(0)).max())
    voxel = 2.0 * extent / config.voxels_per_side
    with torch.random.fork_rng(devices=[]):  # pca_lowrank is randomised; keep the caller's RNG untouched
        torch.manual_seed(config.seed)
        joint = clustering_features(instance, semantic)
    labels = cluster_instances(joint, config)
    labels = split_connected(world, labels, voxel, config.min_node_points)
    labels = merge_parts(world, labels, joint.numpy(), config, voxel)
    return Segmentation(points, world, rgb, labels, semantic, instance)


def label_nodes(
    query: FieldQuery, seg: Segmentation, objects: Sequence[str], config: ExtractionConfig
) -> list[SceneNode]:
    """One node per instance: vocabulary label scores, centroid and robust box (1st-99th percentiles)."""
    vocab = query.encode(list(objects), "semantic").cpu()
    nodes: list[SceneNode] = []
    for nid in seg.node_ids:
        members = seg.labels == nid
        mean = F.normalize(seg.semantic[torch.from_numpy(members)].mean(0), dim=0)
        probs = torch.softmax(vocab @ mean / config.label_temperature, dim=0)
        label_scores = _top(probs, objects, config.label_top_k)
        pts = seg.world[members]
        nodes.append(
            SceneNode(
                id=nid,
                label=label_scores[0][0],
                label_scores=label_scores,
                centroid=tuple(float(v) for v in pts.mean(0)),
                aabb_min=tuple(float(v) for v in np.percentile(pts, 1, axis=0)),
                aabb_max=tuple(float(v) for v in np.percentile(pts, 99, axis=0)),
                point_count=int(members.sum()),
            )
        )
    return nodes


def instance_point_cloud(
    query: FieldQuery, config: ExtractionConfig, progress: Progress = no_progress
) -> tuple[np.ndarray, np.ndarray]:
    """World-frame surface points and their instance ids (-1 = none)."""
    seg = segment(query, config, progress)
    return seg.world, seg.labels


def extract_scene_graph(
    query: FieldQuery,
    objects: Sequence[str],
    predicates: Sequence[str],
    config: ExtractionConfig | None = None,
    progress: Progress = no_progress,
) -> Extraction:
    """Extract a scene graph (world frame) from a loaded run."""
    import time

    config = config or ExtractionConfig()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    seg = segment(query, config, progress)
    timings["segmentation"] = time.perf_counter() - start
    start = time.perf_counter()
    nodes = label_nodes(query, seg, objects, config)
    timings["labels"] = time.perf_counter() - start
    start = time.perf_counter()
    links = score_links(query, seg.points, seg.labels, nodes, predicates, config, progress) if nodes else []
    timings["links"] = time.perf_counter() - start
    return Extraction(SceneGraph(nodes=nodes, links=links), seg.world, seg.colors, seg.labels, timings)


def candidate_pairs(nodes: Sequence[SceneNode], config: ExtractionConfig) -> list[tuple[int, int]]:
    """Ordered (subject, object) index pairs to score."""
    pairs = []
    for a, na in enumerate(nodes):
        for b, nb in enumerate(nodes):
            if a == b:
                continue
            gap = _box_gap(np.array(na.aabb_min), np.array(na.aabb_max), np.array(nb.aabb_min), np.array(nb.aabb_max))
            if config.all_pairs or gap <= config.max_distance:
                pairs.append((a, b))
    return pairs


@torch.no_grad()
def score_links(
    query: FieldQuery,
    points: Tensor,
    labels: np.ndarray,
    nodes: Sequence[SceneNode],
    predicates: Sequence[str],
    config: ExtractionConfig,
    progress: Progress = no_progress,
) -> list[SceneLink]:
    """Score the candidate pairs in batches: x on the subject, z on the object, averaged features."""
    texts = [*predicates, NONE_PREDICATE]
    none_index = len(texts) - 1
    members = [torch.from_numpy(np.nonzero(labels == node.id)[0]) for node in nodes]
    generator = torch.Generator().manual_seed(config.seed)
    pairs = candidate_pairs(nodes, config)
    head = query.model.relation_head
    normalize = query.model.normalize_positions
    links: list[SceneLink] = []
    advance = progress("scoring relations", len(pairs))
    for start in range(0, len(pairs), config.pairs_per_batch):
        batch = pairs[start : start + config.pairs_per_batch]
        xs, zs = [], []
        for a, b in batch:
            xs.append(members[a][torch.randint(len(members[a]), (config.subject_samples,), generator=generator)])
            zs.append(members[b][torch.randint(len(members[b]), (config.object_samples,), generator=generator)])
        x = normalize(points[torch.stack(xs)].to(query.device))  # [P, m, 3]
        z = normalize(points[torch.stack(zs)].to(query.device))  # [P, q, 3]
        p, m, q = len(batch), x.shape[1], z.shape[1]
        feats = head(x[:, :, None, :].expand(p, m, q, 3), z[:, None, :, :].expand(p, m, q, 3))
        mean = F.normalize(F.normalize(feats, dim=-1).mean(dim=(1, 2)), dim=-1)
        probs = query.predicate_probabilities(mean, texts, config.predicate_temperature).cpu()
        for (a, b), row in zip(batch, probs):
            scores = _top(row, texts, config.predicate_top_k, always=none_index)
            best = max(((n, s) for n, s in scores if n != NONE_PREDICATE), key=lambda item: item[1])
            links.append(SceneLink(nodes[a].id, nodes[b].id, best[0], best[1], scores))
        advance(len(batch))
    return links
