"""Measured predicates at export: close by, bigger / smaller and higher / lower than read from the boxes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from relationfield.extraction.config import ExtractionConfig
from relationfield.extraction.measured import MEASURED_PREDICATES, Box, fuse_measured, measure_pair
from relationfield.scene_graph import SceneNode
from relationfield.synth.layout import build_scene
from relationfield.synth.relations import derive_relations

CONFIG = ExtractionConfig()


def box(low, high) -> Box:
    return Box(np.array(low, dtype=float), np.array(high, dtype=float))


TABLE = box([0, 0, 0], [1.2, 0.8, 0.75])
CUP = box([0.5, 0.3, 0.755], [0.58, 0.38, 0.85])  # its lowest surface points a little above the top
CHAIR = box([1.4, 0.0, 0], [2.0, 0.8, 1.0])  # 0.2 m from the table, 2/3 of its volume
SOFA = box([3.0, 0, 0], [5.0, 0.9, 0.8])  # 1.8 m from the table


def test_a_cup_on_a_table_is_smaller_and_higher_but_not_close_by():
    cup = measure_pair(CUP, TABLE, CONFIG)
    assert cup["smaller than"] > 0.99 and cup["higher than"] > 0.9
    assert cup["close by"] == 0.0  # it rests on the table: support, not proximity
    assert cup["bigger than"] < 0.01 and cup["lower than"] < 0.01
    table = measure_pair(TABLE, CUP, CONFIG)
    assert table["bigger than"] > 0.99 and table["lower than"] > 0.9 and table["higher than"] < 0.01


def test_close_by_and_comparisons_need_the_boxes_near_each_other():
    chair = measure_pair(CHAIR, TABLE, CONFIG)
    assert chair["close by"] > 0.99 and measure_pair(TABLE, CHAIR, CONFIG)["close by"] > 0.99
    assert chair["bigger than"] < 0.1 and chair["smaller than"] < 0.1  # volume ratio 1.5: neither
    sofa = measure_pair(SOFA, TABLE, CONFIG)
    assert all(value < 0.01 for value in sofa.values())  # 1.8 m apart: beyond the comparison gap
    book_in_shelf = measure_pair(box([0.1, 0.1, 0.5], [0.15, 0.3, 0.75]), box([0, 0, 0], [1, 0.4, 2]), CONFIG)
    assert book_in_shelf["close by"] == 0.0 and book_in_shelf["smaller than"] > 0.99


def test_what_stands_on_a_part_of_an_object_is_not_close_by_but_what_stands_under_it_is():
    desk_with_shelf = box([0, 0, 0], [1.4, 0.7, 1.2])  # desktop at 0.75, a raised shelf at the back
    cup = box([0.3, 0.1, 0.76], [0.38, 0.18, 0.86])
    assert measure_pair(cup, desk_with_shelf, CONFIG)["close by"] == 0.0
    tucked_chair = box([0.5, 0.5, 0], [0.95, 0.95, 0.9])  # under the desktop, standing on the floor
    assert measure_pair(tucked_chair, desk_with_shelf, CONFIG)["close by"] > 0.99
    assert measure_pair(desk_with_shelf, tucked_chair, CONFIG)["close by"] > 0.99


def test_thresholds_follow_the_config():
    near = box([1.45, 0.2, 0], [1.85, 0.6, 1.8])  # 0.25 m from the table, 0.4 of its volume
    assert measure_pair(near, TABLE, CONFIG)["close by"] > 0.9
    assert measure_pair(near, TABLE, ExtractionConfig(close_by_gap=0.2))["close by"] < 0.1
    assert (
        measure_pair(TABLE, near, ExtractionConfig(volume_ratio=3.0))["bigger than"]
        < 0.5
        < (measure_pair(TABLE, near, CONFIG)["bigger than"])
    )


def _node(i: int, label: str, b: Box) -> SceneNode:
    return SceneNode(i, label, [(label, 1.0)], tuple((b.low + b.high) / 2), tuple(b.low), tuple(b.high), 100)


TEXTS = ["standing on", "close by", "bigger than", "smaller than", "higher than", "lower than", "none"]


def test_fusion_mixes_measured_scores_into_the_field_scores():
    nodes = [_node(0, "cup", CUP), _node(1, "table", TABLE), _node(2, "floor", box([-3, -3, -0.01], [3, 3, 0]))]
    field = torch.tensor([0.6, 0.3, 0.02, 0.02, 0.02, 0.02, 0.02])
    rows = {(0, 1): field.clone(), (1, 0): field.clone(), (1, 2): field.clone()}
    fused = fuse_measured(rows, TEXTS, nodes, ExtractionConfig(measured_weight=0.5))
    cup = dict(zip(TEXTS, fused[(0, 1)].tolist()))
    assert cup["standing on"] == pytest.approx(0.6) and cup["none"] == pytest.approx(0.02)  # unmeasured: kept
    assert cup["smaller than"] > 0.5 and cup["higher than"] > 0.45 and cup["close by"] == pytest.approx(0.15)
    assert dict(zip(TEXTS, fused[(1, 0)].tolist()))["bigger than"] > 0.5
    table_floor = dict(zip(TEXTS, fused[(1, 2)].tolist()))  # room structure is compared with nothing
    assert table_floor["bigger than"] == pytest.approx(0.01) and table_floor["close by"] == pytest.approx(0.15)
    assert torch.equal(rows[(0, 1)], field)  # inputs untouched
    off = fuse_measured(rows, TEXTS, nodes, ExtractionConfig(measured_weight=0.0))
    assert all(torch.equal(off[pair], rows[pair]) for pair in rows)
    unmeasured = fuse_measured({(0, 1): torch.tensor([0.7, 0.3])}, ["standing on", "none"], nodes, CONFIG)
    assert torch.equal(unmeasured[(0, 1)], torch.tensor([0.7, 0.3]))


@pytest.mark.parametrize("layout", ["living-room", "office"])
def test_on_exact_boxes_the_measurement_agrees_with_the_synthetic_ground_truth(layout):
    """The rules are the synthetic ground truth's definitions: on its exact boxes they find its triples exactly."""
    scene = build_scene(layout, np.random.default_rng(0))
    objects = [o for o in scene.objects if not o.structural]
    truth = {(s, o, p) for s, o, p in derive_relations(scene.objects) if p in MEASURED_PREDICATES}
    boxes = {o.id: box(o.aabb.min, o.aabb.max) for o in objects}
    found = set()
    for a in objects:
        for b in objects:
            if a.id != b.id:
                measured = measure_pair(boxes[a.id], boxes[b.id], ExtractionConfig(measure_tolerance=0.005))
                found |= {(a.id, b.id, p) for p, value in measured.items() if value > 0.5}
    assert len(truth) > 100
    assert found == truth, (sorted(truth - found)[:5], sorted(found - truth)[:5])
