"""PLY point clouds: surface points with their colours, node ids and other per-point properties.

Every file is binary little-endian with standard property types only, so that Open3D, trimesh and
CloudCompare read it: ``x y z`` (float), ``red green blue`` (uchar), then, when given, ``node`` (int) and
further properties, integer ones as ``int`` (int32) and the others as ``float`` (float32). trimesh loads
such a file as a ``PointCloud`` whose ``metadata["_ply_raw"]["vertex"]["data"]`` holds every property;
CloudCompare shows the extra properties as scalar fields. ``comment`` lines in the header say what the
properties mean (trimesh and Open3D skip them; CloudCompare shows them in the header).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.errors import UserError

__all__ = ["as_colors", "as_node_ids", "as_points", "read_ply", "write_ply"]

_CORE = ("x", "y", "z", "red", "green", "blue", "node")
"""Properties :func:`write_ply` writes itself; extra properties may not take these names."""


def write_ply(
    path: Path,
    points: np.ndarray,
    colors: np.ndarray,
    node_ids: np.ndarray | None = None,
    *,
    properties: Mapping[str, np.ndarray] | None = None,
    comments: Sequence[str] = (),
) -> None:
    """Binary little-endian PLY: ``x y z`` (float32), ``red green blue`` (uchar), with ``node_ids`` an
    int32 ``node`` property, then each of ``properties`` in order (integers as int32, others as float32).

    ``colors`` are uint8 (any integer type in 0..255, or floats in 0..1). ``comments`` go to the header,
    one ``comment`` line each. Everything is checked before the file is replaced (atomically).
    """
    from plyfile import PlyData, PlyElement  # imported when used: the package imports with numpy alone

    xyz = as_points(points)
    rgb = as_colors(colors, len(xyz))
    ids = as_node_ids(node_ids, len(xyz))
    extra = _as_properties(properties or {}, len(xyz))
    lines = [_comment_line(text) for text in comments]
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    fields += [("node", "<i4")] if ids is not None else []
    fields += [(name, values.dtype.str) for name, values in extra.items()]
    vertex = np.empty(len(xyz), dtype=fields)
    for axis, name in enumerate("xyz"):
        vertex[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, channel]
    if ids is not None:
        vertex["node"] = ids
    for name, values in extra.items():
        vertex[name] = values
    data = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<", comments=lines)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        data.write(handle)


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """Points ``[N, 3]`` (float64) and node ids ``[N]`` (None without a ``node`` property) of a PLY file
    written by :func:`write_ply`.

    Raises:
        UserError: the file is missing or is not a PLY point cloud.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        vertex = PlyData.read(str(path))["vertex"].data
        points = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], axis=1)
    except (OSError, ValueError, KeyError) as error:
        raise UserError(f"{path} is not a PLY point cloud ({error})") from None
    names = vertex.dtype.names or ()
    return points, (np.asarray(vertex["node"], dtype=np.int64) if "node" in names else None)


def as_points(points: np.ndarray) -> np.ndarray:
    """Finite [N, 3] points as float32."""
    xyz = np.asarray(points, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise ValueError(f"points must be an [N, 3] array, got shape {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ValueError("points must be finite (found NaN or inf)")
    return xyz.astype(np.float32)


def as_colors(colors: np.ndarray, count: int) -> np.ndarray:
    """[N, 3] colours as uint8 (integers in 0..255 or floats in [0, 1])."""
    rgb = np.asarray(colors)
    if rgb.shape != (count, 3):
        raise ValueError(f"colors must be an [N, 3] array matching {count} points, got shape {rgb.shape}")
    if np.issubdtype(rgb.dtype, np.floating):
        if count and (not np.isfinite(rgb).all() or rgb.min() < -1e-3 or rgb.max() > 1.0 + 1e-3):
            raise ValueError("float colors must lie in [0, 1] (pass uint8 for 0..255)")
        return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)
    if not np.issubdtype(rgb.dtype, np.integer):
        raise ValueError(f"colors must be integers in 0..255 or floats in [0, 1], got dtype {rgb.dtype}")
    if count and (rgb.min() < 0 or rgb.max() > 255):
        raise ValueError("integer colors must lie in 0..255")
    return rgb.astype(np.uint8)


def as_node_ids(node_ids: np.ndarray | None, count: int) -> np.ndarray | None:
    """[N] integer node ids as int32 (or None)."""
    if node_ids is None:
        return None
    return _as_int32(node_ids, count, "node ids")


def _as_int32(values: np.ndarray, count: int, what: str) -> np.ndarray:
    """[N] integers as int32 (an empty array of any dtype passes)."""
    array = np.asarray(values)
    if array.shape != (count,):
        raise ValueError(f"{what} must be an [N] array matching {count} points, got shape {array.shape}")
    if count and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got dtype {array.dtype}")
    limits = np.iinfo(np.int32)
    if count and (array.min() < limits.min or array.max() > limits.max):
        raise ValueError(f"{what} must fit in int32")
    return array.astype("<i4")


def _as_properties(properties: Mapping[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """Extra per-point properties as int32 (integer arrays) or finite float32 (the others)."""
    checked: dict[str, np.ndarray] = {}
    for name, values in properties.items():
        if name in _CORE or not name.isidentifier():
            raise ValueError(f"{name!r} cannot name an extra PLY property (reserved or not a plain name)")
        array = np.asarray(values)
        if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
            checked[name] = _as_int32(array.astype(np.int64), count, f"property {name!r}")
            continue
        if array.shape != (count,) or not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"property {name!r} must be an [N] array of numbers matching {count} points")
        if not np.isfinite(array).all():
            raise ValueError(f"property {name!r} must be finite (found NaN or inf)")
        checked[name] = array.astype("<f4")
    return checked


def _comment_line(text: str) -> str:
    """One header comment: a single line of printable ASCII (PLY headers are ASCII, line by line)."""
    line = " ".join(str(text).split())
    return line.encode("ascii", "replace").decode("ascii")
