"""Scene graphs: the data model and the files it is written to.

A :class:`SceneGraph` holds objects (:class:`SceneNode`, world frame, +z up) and directed, scored
relations between them (:class:`SceneLink`, subject -> object). It is written as

* ``scene_graph.json``: networkx node-link data (``edges="links"``) with a format name and version,
  readable by :meth:`SceneGraph.from_json` (validated by the models of :mod:`relationfield.scene_graph.schema`)
  and by ``networkx.node_link_graph(data, edges="links")``;
* ``scene_graph.png``: a drawing of the graph (:func:`draw_scene_graph`);
* ``points.ply``: surface points coloured by node, with the node id of every point (:func:`write_ply`).

Only numpy and pydantic are imported with the package; networkx, matplotlib and plyfile are imported by the
functions that need them (torch and nerfstudio never are).
"""

from relationfield.scene_graph.colors import NOISE_COLOR, node_colors
from relationfield.scene_graph.files import JSON_FILE, PLY_FILE, PNG_FILE, read_scene_graph, write_scene_graph
from relationfield.scene_graph.graph import SceneGraph, SceneLink, SceneNode
from relationfield.scene_graph.picture import MAX_DRAWN_LINKS, draw_scene_graph, drawn_links
from relationfield.scene_graph.ply import read_ply, write_ply
from relationfield.scene_graph.schema import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "JSON_FILE",
    "MAX_DRAWN_LINKS",
    "NOISE_COLOR",
    "PLY_FILE",
    "PNG_FILE",
    "SceneGraph",
    "SceneLink",
    "SceneNode",
    "draw_scene_graph",
    "drawn_links",
    "node_colors",
    "read_ply",
    "read_scene_graph",
    "write_ply",
    "write_scene_graph",
]
