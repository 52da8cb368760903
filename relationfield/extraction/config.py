"""Settings of scene-graph extraction, and the progress callback its stages report to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["SURFACE_SOURCES", "ExtractionConfig", "Progress", "SurfaceSource", "no_progress"]

SurfaceSource = Literal["auto", "rendered", "depth"]
SURFACE_SOURCES: tuple[str, ...] = ("auto", "rendered", "depth")


@dataclass
class ExtractionConfig:
    """Knobs of scene-graph extraction (defaults suit the synthetic scenes and room-sized captures)."""

    max_views: int = 80
    """Training views that give surface points (evenly spread). More views see more of what few views
    show edgewise (a 3 cm book under another is a few pixels wide in most frames); on the demo (54 training
    views, all rendered at 80) the export took as long as with 40. Rendering time grows with the count."""
    surface: SurfaceSource = "auto"
    """Where surface points come from: ``rendered``, the field's expected depth; ``depth``, the capture's
    depth maps (exact where the sensor saw, no rendering); ``auto``, depth maps when the run was trained
    to match them (``datamanager.depth-supervision``), else rendered."""
    view_pixels: int = 4096
    """Larger views are rendered downscaled to about this many pixels (0 = full resolution); depth maps are
    used at full resolution."""
    min_accumulation: float = 0.5
    """Pixels whose rendered opacity is lower are not surface points."""
    voxels_per_side: int = 240
    """Deduplication grid: the points' bounding box is split into this many voxels along its longest side."""
    cluster_points: int = 250000
    """Most points HDBSCAN clusters (beyond, a random subsample; the others take the label of their nearest
    neighbour). The default holds all of a room's points at 240 voxels (the demo has about 150,000); a
    subsample thins small objects below the minimum cluster size: at 40,000 the demo's 3 cm book under
    another (about 25 points) was lost at every export seed tried."""
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
    fragment_ratio: float = 0.1
    """A node with at most this share of the points of a touching node with the same label is merged into it
    (a sliver of floor at a chair's feet is not an object; 0 turns this off)."""
    stain_voxels: float = 0.05
    """A node whose points lie within this many clustering voxels (two deduplication voxels) of the plane of
    a touching node with four times its points, beyond that plane's own roughness, is a stain on it (a
    patch of floor by a sofa with the sofa's features) and is merged into it; objects stand out of the
    surface they rest on by their own height. 0 turns this off."""
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
    converse_weight: float = 0.5
    """Weight of the reverse link's converse score in a link's score of a converse or symmetric predicate
    ("A bigger than B" and "B smaller than A"; 0 turns this off)."""
    implied_predicates: bool = True
    """Raise a link's score of a predicate that another entails ("standing on" entails "supported by") to the
    entailing predicate's score (relationfield.vocab.IMPLIED)."""
    measured_weight: float = 0.5
    """Weight of the predicates measured from the nodes' boxes (close by, bigger / smaller than, higher / lower
    than; relationfield.extraction.measured) against the field's scores of them; 0 turns measuring off. World
    units: metric captures (synthetic, ScanNet++, 3RScan) as they are, a COLMAP capture only once scaled."""
    close_by_gap: float = 0.3
    """Measured "close by": the two boxes at most this far apart (world units)."""
    comparison_gap: float = 1.0
    """Measured size and height comparisons: only for boxes at most this far apart (world units)."""
    volume_ratio: float = 2.0
    """Measured "bigger than": the subject's box volume at least this many times the object's."""
    measure_tolerance: float = 0.02
    """How far lengths measured on surface points may be off (world units; the spacing of the points of a
    room-sized export): the width of the measured rules' soft thresholds."""
    all_pairs: bool = False
    """Score every ordered pair of nodes instead."""
    subject_samples: int = 48
    """Points sampled on the subject per pair."""
    object_samples: int = 12
    """Query positions sampled on the object per pair."""
    pairs_per_batch: int = 32
    """Pairs scored per batch (bounds memory)."""
    seed: int = 0
    """Seed of the clustering subsample, the PCA of the clustering features and the points sampled per pair."""


Progress = Callable[[str, int], Callable[[int], None]]
"""``progress(stage, total)`` starts a stage of ``total`` steps and returns ``advance(steps)``."""


def no_progress(_: str, __: int) -> Callable[[int], None]:
    """A :data:`Progress` that reports nothing."""
    return lambda _step: None
