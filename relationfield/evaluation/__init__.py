"""Evaluate a predicted 3D scene graph against ground truth, 3DSSG-style (recall@k).

numpy / scipy / pydantic only: no torch, no nerfstudio (relation-guided segmentation imports torch when
it is called). The exact protocol is documented in the README's section "Evaluation protocol
(``relationfield eval``)"; in short:

* predicted nodes are matched one-to-one to ground-truth (GT) objects by axis-aligned box IoU
  (Hungarian assignment, pairs below ``min_iou`` dropped), or through a given node map;
* Object R@k (k = 1, 5, 10) over GT objects, Predicate R@k (k = 1, 3, 5) and Relation (triplet)
  R@k (k = 1, 50, 100) over GT triplets; every rank counts ties against the prediction (the default
  ``protocol="relationfield"``; ``"open3dsg"`` and ``"3dssg"`` follow those papers' evaluation code,
  :mod:`~relationfield.evaluation.protocols`).

Two ground-truth formats are understood: ``{"objects": [...], "relationships": [[s, o, "p"], ...]}``
(the synthetic captures' ``ground_truth/scene_graph.json``) and 3DSSG's ``relationships.json``
(``{"scans": [...]}``, no geometry, so a node map is required).

Public API::

    evaluate(pred, gt, *, min_iou=0.1, ignore_labels=(), node_map=None, scan=None,
             protocol="relationfield", splits=None) -> EvalResult
    evaluate_files(pred_path, gt_path, *, output_dir=None, min_iou=0.1, ignore_labels=(),
                   node_map_path=None, scan=None, protocol="relationfield", splits_path=None) -> EvalResult
    rank_with_ties(scores, name) -> int | None
    aabb_iou(a_min, a_max, b_min, b_max) -> float
    relation_guided_segmentation(query, points_world, point_node, gt, matches, ...) -> GuidedResult

Bad input raises :class:`relationfield.errors.UserError` with a message meant for a person.

Modules: :mod:`~relationfield.evaluation.schema` (field types and error messages),
:mod:`~relationfield.evaluation.prediction` (the prediction reader),
:mod:`~relationfield.evaluation.ground_truth` (the two GT formats), :mod:`~relationfield.evaluation.matching`,
:mod:`~relationfield.evaluation.ranking` (ranks and recalls), :mod:`~relationfield.evaluation.protocols` (the
peers' rules), :mod:`~relationfield.evaluation.report`
(:class:`EvalResult`, ``eval.json`` / ``eval.md``), :mod:`~relationfield.evaluation.evaluator` (the entry
points) and :mod:`~relationfield.evaluation.guided_segmentation`.
"""

from relationfield.evaluation.evaluator import evaluate, evaluate_files
from relationfield.evaluation.guided_segmentation import GuidedResult, GuidedTriplet, relation_guided_segmentation
from relationfield.evaluation.matching import DEFAULT_MIN_EXTENT, DEFAULT_MIN_IOU, Match, aabb_iou, pad_box
from relationfield.evaluation.ranking import OBJECT_KS, PREDICATE_KS, RELATION_KS, rank_with_ties
from relationfield.evaluation.referring_segmentation import ReferringResult, referring_segmentation
from relationfield.evaluation.report import EvalResult
from relationfield.evaluation.schema import normalize_name

__all__ = [
    "DEFAULT_MIN_EXTENT",
    "DEFAULT_MIN_IOU",
    "OBJECT_KS",
    "PREDICATE_KS",
    "RELATION_KS",
    "EvalResult",
    "GuidedResult",
    "GuidedTriplet",
    "ReferringResult",
    "Match",
    "aabb_iou",
    "evaluate",
    "evaluate_files",
    "normalize_name",
    "pad_box",
    "rank_with_ties",
    "referring_segmentation",
    "relation_guided_segmentation",
]
