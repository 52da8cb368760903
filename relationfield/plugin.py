"""What nerfstudio loads from this plugin: the two method presets, and the `ns-export scene-graph` shim.

The ``nerfstudio.method_configs`` entry points name this module, which nerfstudio imports for every ns-*
command; the shim acts only while ``ns-export`` is importing its exporter (:mod:`relationfield.ns_export`).
"""

from __future__ import annotations

from relationfield import ns_export
from relationfield.config import relationfield_lite_method, relationfield_method

__all__ = ["relationfield_lite_method", "relationfield_method"]

ns_export.install()
