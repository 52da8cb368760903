"""``points.ply``: surface points with their colours and node ids (binary little-endian PLY)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relationfield.atomic import atomic_write
from relationfield.errors import UserError

__all__ = ["as_colors", "as_node_ids", "as_points", "read_ply", "write_ply"]


def write_ply(path: Path, points: np.ndarray, colors: np.ndarray, node_ids: np.ndarray | None = None) -> None:
    """Binary little-endian PLY: ``x y z`` (float32), ``red green blue`` (uchar) and, with ``node_ids``,
    an int32 ``node`` property per vertex.

    ``colors`` are uint8 (any integer type in 0..255, or floats in 0..1). Replaced atomically.
    """
    from plyfile import PlyData, PlyElement  # imported when used: the package imports with numpy alone

    xyz = as_points(points)
    rgb = as_colors(colors, len(xyz))
    ids = as_node_ids(node_ids, len(xyz))
    fields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    vertex = np.empty(len(xyz), dtype=fields + ([("node", "<i4")] if ids is not None else []))
    for axis, name in enumerate("xyz"):
        vertex[name] = xyz[:, axis]
    for channel, name in enumerate(("red", "green", "blue")):
        vertex[name] = rgb[:, channel]
    if ids is not None:
        vertex["node"] = ids
    data = PlyData([PlyElement.describe(vertex, "vertex")], text=False, byte_order="<")
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
    ids = np.asarray(node_ids)
    if ids.shape != (count,):
        raise ValueError(f"node ids must be an [N] array matching {count} points, got shape {ids.shape}")
    if count and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"node ids must be integers, got dtype {ids.dtype}")
    limits = np.iinfo(np.int32)
    if count and (ids.min() < limits.min or ids.max() > limits.max):
        raise ValueError("node ids must fit in int32")
    return ids.astype(np.int32)
