"""3D scene-graph extraction from a trained RelationField.

1. Surface points (:mod:`~relationfield.extraction.surface`): render the expected depth of (a spread of)
   training views, keep pixels with enough accumulation, and deduplicate the 3D points on a voxel grid.
2. Instances (:mod:`~relationfield.extraction.clustering`, :mod:`~relationfield.extraction.segmentation`):
   HDBSCAN on the points' clustering features (a subsample; the rest join the nearest cluster), clusters
   split into spatially connected parts, tiny parts dropped, and parts whose features and boxes agree merged.
3. Labels (:mod:`~relationfield.extraction.nodes`): each node's mean semantic feature against the object
   vocabulary (top-k softmax scores).
4. Links (:mod:`~relationfield.extraction.links`): every node pair within ``max_distance`` (or all pairs):
   relation features g(x, z) with x sampled on the subject and z on the object, averaged, scored against the
   predicate vocabulary and "none".

:func:`extract_scene_graph` (:mod:`~relationfield.extraction.graph`) runs them all. Everything is batched;
memory grows with the number of points and the number of candidate pairs, never with their product.
"""

from relationfield.extraction.clustering import (
    cluster_instances,
    merge_parts,
    recluster_noise,
    reduce_dims,
    split_connected,
)
from relationfield.extraction.config import ExtractionConfig, Progress, no_progress
from relationfield.extraction.graph import Extraction, extract_scene_graph, extraction_metadata
from relationfield.extraction.links import candidate_pairs, score_links
from relationfield.extraction.nodes import label_nodes
from relationfield.extraction.segmentation import Segmentation, instance_point_cloud, segment
from relationfield.extraction.surface import render_scale, surface_points

__all__ = [
    "Extraction",
    "ExtractionConfig",
    "Progress",
    "Segmentation",
    "candidate_pairs",
    "cluster_instances",
    "extract_scene_graph",
    "extraction_metadata",
    "instance_point_cloud",
    "label_nodes",
    "merge_parts",
    "no_progress",
    "recluster_noise",
    "reduce_dims",
    "render_scale",
    "score_links",
    "segment",
    "split_connected",
    "surface_points",
]
