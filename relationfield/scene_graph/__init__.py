"""Scene graphs: the data model and the files it is written to.

A :class:`SceneGraph` holds objects (:class:`SceneNode`, world frame, +z up) and directed, scored
relations between them (:class:`SceneLink`, subject -> object). It is written as

* ``scene_graph.json``: networkx node-link data (``edges="links"``) with a format name and version,
  readable by :meth:`SceneGraph.from_json` (validated by the models of :mod:`relationfield.scene_graph.schema`)
  and by ``networkx.node_link_graph(data, edges="links")``;
* ``scene_graph.png``: a drawing of the graph (:func:`draw_scene_graph`);
* ``points.ply``: surface points coloured by node, with the node id and label index of every point
  (:func:`write_ply`); on request also ``labels.txt`` and ``objects/<id>_<label>.ply``;
* on request, other tools' formats: ConceptGraphs' (:mod:`~relationfield.scene_graph.conceptgraphs`) and
  3DSSG's (:mod:`~relationfield.scene_graph.threedssg`); and a query's answer points (:func:`write_query_points`).

Only numpy and pydantic are imported with the package; networkx, matplotlib and plyfile are imported by the
functions that need them (torch and nerfstudio never are).
"""

from relationfield.scene_graph.colors import NOISE_COLOR, node_colors
from relationfield.scene_graph.conceptgraphs import conceptgraphs_files, parse_conceptgraphs
from relationfield.scene_graph.files import (
    FORMATS,
    JSON_FILE,
    LABELS_FILE,
    OBJECTS_DIR,
    PLY_FILE,
    PNG_FILE,
    QUERY_FILE,
    label_table,
    object_file_name,
    read_scene_graph,
    write_query_points,
    write_scene_graph,
)
from relationfield.scene_graph.graph import SceneGraph, SceneLink, SceneNode
from relationfield.scene_graph.picture import (
    DEFAULT_FAMILIES,
    MAX_DRAWN_LINKS,
    draw_scene_graph,
    drawn_links,
    render_scene_graph,
)
from relationfield.scene_graph.ply import read_ply, write_ply
from relationfield.scene_graph.relations import is_relation, relation_links
from relationfield.scene_graph.schema import FORMAT_NAME, FORMAT_VERSION
from relationfield.scene_graph.threedssg import parse_threedssg, predicate_table, threedssg_files

__all__ = [
    "DEFAULT_FAMILIES",
    "FORMATS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "JSON_FILE",
    "LABELS_FILE",
    "MAX_DRAWN_LINKS",
    "NOISE_COLOR",
    "OBJECTS_DIR",
    "PLY_FILE",
    "PNG_FILE",
    "QUERY_FILE",
    "SceneGraph",
    "SceneLink",
    "SceneNode",
    "conceptgraphs_files",
    "draw_scene_graph",
    "drawn_links",
    "is_relation",
    "label_table",
    "node_colors",
    "object_file_name",
    "parse_conceptgraphs",
    "parse_threedssg",
    "predicate_table",
    "read_ply",
    "read_scene_graph",
    "render_scene_graph",
    "relation_links",
    "threedssg_files",
    "write_ply",
    "write_query_points",
    "write_scene_graph",
]
