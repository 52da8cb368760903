"""RelationField: open-vocabulary relations and 3D scene graphs in radiance fields.

Importing the package is cheap: heavy dependencies (torch, nerfstudio, encoders) are imported by the
modules that need them.
"""

__version__ = "0.1.0"
