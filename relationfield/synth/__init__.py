"""Procedural indoor scenes rendered into posed captures with ground truth.

``generate_capture`` builds a room (floor, walls, ceiling) furnished from primitive shapes with
labels from the 3DSSG vocabulary, derives ground-truth relations from the geometry
(:mod:`relationfield.synth.relations`), ray-casts RGB, depth and instance images from varied camera
positions and writes a nerfstudio-readable capture (:mod:`relationfield.synth.capture`). It is the
project's default data set, test fixture and benchmark. Only numpy, trimesh (with embreex), Pillow
and rich are needed; torch and nerfstudio are not imported.
"""

from relationfield.synth.layout import LAYOUTS

# The capture writer imports trimesh (about a second); load it on first use so that the CLI's --help,
# which needs only LAYOUTS, stays light.
_LAZY = {"SynthSummary": "relationfield.synth.capture", "generate_capture": "relationfield.synth.capture"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["LAYOUTS", "SynthSummary", "generate_capture"]
