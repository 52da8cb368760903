"""Drawing in the viewer's 3D scene (viser): the picked reference, the built scene graph, a found object.

Every function draws under a scene-tree folder ``root`` and returns the handles it added, so that the
caller can remove them before drawing again. Points are in nerfstudio's frame (the scene graph's in the
world frame); viser's scene is nerfstudio's scaled by :func:`relationfield.viewer.render.viser_scale`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from viser import ViserServer

from relationfield.extraction import Extraction
from relationfield.query import FieldQuery
from relationfield.scene_graph import drawn_links, node_colors
from relationfield.viewer.render import viser_scale

REFERENCE_COLOR = (255, 90, 30)
LINK_COLOR = (255, 211, 105)
FOUND_COLOR = (255, 40, 220)
"""The answer of a "Find" query: a magenta that the per-node colours of the scene graph rarely come close to."""


def draw_reference(server: ViserServer, root: str, point: Tensor, members: Tensor | None) -> list[Any]:
    """A marker at the clicked ``point``, and the reference object's ``members`` points in object mode."""
    scale = viser_scale()
    handles = [
        server.scene.add_icosphere(
            f"{root}/marker",
            radius=0.08,
            color=REFERENCE_COLOR,
            position=tuple(float(v) * scale for v in point.tolist()),
        )
    ]
    if members is not None:
        handles.append(
            server.scene.add_point_cloud(
                f"{root}/object", points=members.cpu().numpy() * scale, colors=REFERENCE_COLOR, point_size=0.04
            )
        )
    return handles


def draw_found(server: ViserServer, root: str, points: Tensor, name: str) -> list[Any]:
    """The found object's ``points`` [N, 3] in a bright colour (larger than the scene graph's) and its name."""
    scale = viser_scale()
    viser_points = points.detach().cpu().float().numpy() * scale
    return [
        server.scene.add_point_cloud(f"{root}/points", points=viser_points, colors=FOUND_COLOR, point_size=0.05),
        server.scene.add_label(f"{root}/name", name, position=tuple(float(v) for v in viser_points.mean(axis=0))),
    ]


def draw_scene_graph(server: ViserServer, root: str, extraction: Extraction, query: FieldQuery) -> list[Any]:
    """The extraction's points coloured by node, a label per node and a line and a predicate per drawn link."""
    scale = viser_scale()

    def to_viser(world: Any) -> np.ndarray:
        return (query.to_model(torch.as_tensor(np.asarray(world), dtype=torch.float32)) * scale).numpy()

    graph = extraction.graph
    centres = {node.id: to_viser([node.centroid])[0] for node in graph.nodes}
    handles: list[Any] = []
    if len(extraction.points_world):
        handles.append(
            server.scene.add_point_cloud(
                f"{root}/points",
                points=to_viser(extraction.points_world),
                colors=node_colors(extraction.point_node),
                point_size=0.03,
            )
        )
    for node in graph.nodes:
        handles.append(server.scene.add_label(f"{root}/nodes/{node.id}", node.display_name, position=centres[node.id]))
    for link in drawn_links(graph.links)[0]:
        source, target = centres[link.source], centres[link.target]
        name = f"{link.source}_{link.target}"
        handles.append(
            server.scene.add_spline_catmull_rom(
                f"{root}/links/{name}", positions=np.stack([source, target]), line_width=2.0, color=LINK_COLOR
            )
        )
        # the predicate sits nearer the subject, so the labels of a->b and b->a do not overlap
        handles.append(
            server.scene.add_label(
                f"{root}/predicates/{name}", link.predicate, position=source + 0.4 * (target - source)
            )
        )
    return handles
