"""Interactive relation and object queries in nerfstudio's viewer (``ns-viewer``, or ``ns-train``'s viewer).

:class:`RelationViewerControls` is an ``nn.Module`` without parameters that
:class:`relationfield.pipeline.RelationFieldPipeline` sets as ``model.viewer_controls`` (the model imports no
GUI code). nerfstudio's viewer finds its GUI elements and its ``ViewerControl`` on its own and
installs them under "Custom Elements"; the control's ``_setup`` hands over the viewer, which attaches the
pipeline. Until then (training without a viewer, ``relationfield query``, tests that do not attach) the
controls change no output.

Queries use :class:`relationfield.query.FieldQuery` (the code path of ``relationfield query``): relevancy is
computed at each pixel's expected-depth point, a relation query against the reference point(s) picked by a
click. "Find" answers a referring query ("mug standing on desk") over the scene graph's instances, as
``relationfield query`` does. "Build scene graph" runs :func:`relationfield.extraction.extract_scene_graph`
with the default vocabularies (as ``relationfield export scene-graph``) and "Export scene graph" writes the
same files.

* :mod:`relationfield.viewer.panel`: the panel, :class:`RelationViewerControls`.
* :mod:`relationfield.viewer.panel_base`: attaching to the viewer, the status line, redrawable scene groups.
* :mod:`relationfield.viewer.render`: tensor helpers behind the outputs and picks (colour maps, relevancy).
* :mod:`relationfield.viewer.drawing`: drawing the reference, the scene graph and a found object in the 3D view.
* :mod:`relationfield.viewer.referring_box`: the "Find" box: referring and object queries over the scene graph.
"""

from relationfield.viewer.panel import RelationViewerControls

__all__ = ["RelationViewerControls"]
