"""Reading one 3RScan scan's files: its RGB-D sequence (folder or zip), semseg.v2.json, the annotated PLY and 3DSSG's
relationships.json, each checked and read into plain arrays, with a :class:`UserError` naming the file on bad input.

The formats, as 3RScan's own code reads them (``c++/rio_lib/src/rio_lib/sequence.cc``, ``FAQ.md``):

* ``_info.txt``: ``key = value`` lines; ``m_calibrationColorIntrinsic`` / ``m_calibrationDepthIntrinsic`` are 16
  numbers, a row-major 4x4 matrix (fx = [0], cx = [2], fy = [5], cy = [6]) for images of ``m_colorWidth`` x
  ``m_colorHeight`` / ``m_depthWidth`` x ``m_depthHeight`` pixels, as stored (sideways);
* ``frame-NNNNNN.pose.txt``: 4 rows of 4 numbers, camera (OpenCV axes) to world, metres; inf/NaN when tracking failed;
* ``frame-NNNNNN.depth.pgm``: 16-bit binary PGM, depth in 1/``m_depthShift`` metres, 0 = none;
* ``labels.instances.annotated.v2.ply``: vertices with an ``objectId`` property, triangles in ``vertex_indices``;
* ``semseg.v2.json``: ``segGroups`` of ``{"objectId" (or "id"), "label"}``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from relationfield.errors import UserError

SEQUENCE_DIR = "sequence"
SEQUENCE_ZIP = "sequence.zip"
INFO_FILE = "_info.txt"
SEMSEG_FILE = "semseg.v2.json"
MESH_FILE = "labels.instances.annotated.v2.ply"
RELATIONSHIPS_FILE = "relationships.json"
INFO_KEYS = (
    "m_colorWidth",
    "m_colorHeight",
    "m_depthWidth",
    "m_depthHeight",
    "m_depthShift",
    "m_calibrationColorIntrinsic",
    "m_calibrationDepthIntrinsic",
)
"""The ``_info.txt`` keys a conversion needs (``m_frames.size`` is used when present)."""
_COLOR_FRAME = re.compile(r"frame-(\d+)\.color\.jpg")
_PGM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n)*(\d+)")  # a header number after whitespace and comments

Pinhole = tuple[float, float, float, float]
"""``(fx, fy, cx, cy)`` in pixels."""


def frame_file(index: int, kind: str) -> str:
    """The name of frame ``index``'s ``kind`` file (``color.jpg``, ``depth.pgm`` or ``pose.txt``)."""
    return f"frame-{index:06d}.{kind}"


@dataclass(frozen=True)
class SequenceInfo:
    """A sequence's ``_info.txt``: image sizes and intrinsics as stored, the depth unit and the frame count."""

    color_size: tuple[int, int]
    """``(width, height)`` of the stored colour images."""
    depth_size: tuple[int, int]
    """``(width, height)`` of the stored depth images."""
    depth_shift: float
    """Depth units per metre (1000: millimetres)."""
    color_intrinsics: Pinhole
    """The colour camera, for stored colour images."""
    depth_intrinsics: Pinhole
    """The depth camera, for stored depth images."""
    num_frames: int | None
    """``m_frames.size``, if the file has it."""


class Sequence:
    """A scan's RGB-D sequence, the unpacked ``sequence/`` folder or ``sequence.zip`` read member by member."""

    def __init__(self, scan: Path) -> None:
        self._zip: zipfile.ZipFile | None = None
        folder, archive = scan / SEQUENCE_DIR, scan / SEQUENCE_ZIP
        # The unpacked folder wins (faster), unless it is an unfinished extraction and the zip is there.
        if (folder / INFO_FILE).is_file() or (folder.is_dir() and not archive.is_file()):
            self.label, self._root = f"{SEQUENCE_DIR}/", folder
            self._members = {path.name: path.name for path in folder.iterdir()}
        elif archive.is_file():
            self.label, self._root = SEQUENCE_ZIP, archive
            self._members = self._open_zip(archive)
        else:
            raise UserError(f"{scan} has no RGB-D sequence: neither {folder} nor {archive} exists.")
        if INFO_FILE not in self._members:
            self.close()
            raise UserError(f"{self._root} has no {INFO_FILE}; is it a 3RScan sequence?")

    def _open_zip(self, archive: Path) -> dict[str, str]:
        try:
            self._zip = zipfile.ZipFile(archive)
        except (zipfile.BadZipFile, OSError) as error:
            raise UserError(f"{archive} is not a readable zip archive ({error}).") from None
        names = [name for name in self._zip.namelist() if not name.endswith("/")]
        infos = sorted((name for name in names if name.rsplit("/", 1)[-1] == INFO_FILE), key=len)
        # Members lie at the top level (the download unzips it into sequence/) or below one folder.
        prefix = infos[0][: -len(INFO_FILE)] if infos else ""
        return {
            name[len(prefix) :]: name for name in names if name.startswith(prefix) and "/" not in name[len(prefix) :]
        }

    def where(self, name: str) -> str:
        """How to name member ``name`` in a message."""
        return f"{self._root}:{self._members.get(name, name)}" if self._zip else str(self._root / name)

    def read(self, name: str) -> bytes:
        """The bytes of member ``name``."""
        if name not in self._members:
            raise UserError(f"{self.where(name)} is missing.")
        try:
            return self._zip.read(self._members[name]) if self._zip else (self._root / name).read_bytes()
        except (OSError, zipfile.BadZipFile, zlib.error) as error:  # a damaged archive fails member by member
            raise UserError(f"Cannot read {self.where(name)}: {error}") from None

    def read_text(self, name: str) -> str:
        """Member ``name`` as text."""
        try:
            return self.read(name).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{self.where(name)} is not a text file.") from None

    def color_frames(self) -> list[int]:
        """The indices of the frames with a colour image, in order."""
        return sorted(int(match.group(1)) for name in self._members if (match := _COLOR_FRAME.fullmatch(name)))

    def close(self) -> None:
        """Close the zip archive, if any."""
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Sequence:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None):
        self.close()


def parse_info(text: str, where: str) -> SequenceInfo:
    """Read ``_info.txt`` (``where`` names it in messages)."""
    entries = {}
    for line in text.splitlines():
        key, equals, value = line.partition("=")
        if equals:
            entries[key.strip()] = value.strip()
    missing = [key for key in INFO_KEYS if key not in entries]
    if missing:
        raise UserError(f"{where} lacks {', '.join(missing)}.")

    def integer(key: str) -> int:
        try:
            value = int(entries[key])
        except ValueError:
            raise UserError(f"{where}: {key} must be a positive integer, got {entries[key]!r}.") from None
        if value <= 0 and key != "m_frames.size":
            raise UserError(f"{where}: {key} must be a positive integer, got {value}.")
        return value

    def intrinsics(key: str) -> Pinhole:
        matrix = _numbers(entries[key], 16, f"{where}: {key}", "16 numbers (a row-major 4x4 matrix)").reshape(4, 4)
        fx, fy, cx, cy = (float(v) for v in (matrix[0, 0], matrix[1, 1], matrix[0, 2], matrix[1, 2]))
        if not (fx > 0 and fy > 0 and np.isfinite([cx, cy]).all()):
            raise UserError(f"{where}: {key} has no valid focal lengths / principal point: {entries[key]}.")
        return fx, fy, cx, cy

    shift = _numbers(entries["m_depthShift"], 1, f"{where}: m_depthShift", "one number")[0]
    if not shift > 0:
        raise UserError(f"{where}: m_depthShift must be positive, got {entries['m_depthShift']}.")
    count = integer("m_frames.size") if "m_frames.size" in entries else None
    if count is not None and count < 0:
        raise UserError(f"{where}: m_frames.size must not be negative, got {count}.")
    return SequenceInfo(
        color_size=(integer("m_colorWidth"), integer("m_colorHeight")),
        depth_size=(integer("m_depthWidth"), integer("m_depthHeight")),
        depth_shift=float(shift),
        color_intrinsics=intrinsics("m_calibrationColorIntrinsic"),
        depth_intrinsics=intrinsics("m_calibrationDepthIntrinsic"),
        num_frames=count,
    )


def _numbers(text: str, count: int, where: str, expected: str) -> np.ndarray:
    try:
        values = np.array([float(token) for token in text.split()], dtype=np.float64)
    except ValueError:
        raise UserError(f"{where} must be {expected}, got {text!r}.") from None
    if values.size != count:
        raise UserError(f"{where} must be {expected}, got {values.size}.")
    return values


def parse_pose(text: str, where: str) -> np.ndarray:
    """A ``pose.txt``: the 4x4 camera-to-world matrix, possibly with inf/NaN (a tracking failure)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if len(rows) != 4 or any(len(row) != 4 for row in rows):
        shape = "x".join(str(len(row)) for row in rows) or "empty"
        raise UserError(f"{where} must hold a 4x4 matrix (4 rows of 4 numbers), got rows of {shape} numbers.")
    return _numbers(" ".join(" ".join(row) for row in rows), 16, where, "a 4x4 matrix of numbers").reshape(4, 4)


def decode_color(data: bytes, where: str) -> np.ndarray:
    """A colour image file as ``[H, W, 3]`` uint8 RGB."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
        raise UserError(f"Cannot read the image {where}: {error}") from None


def decode_pgm(data: bytes, where: str) -> np.ndarray:
    """A binary (P5) PGM as ``[H, W]`` uint16, samples as stored (no rescaling by the maximum value)."""
    tokens: list[int] = []
    position = 2
    try:
        if data[:2] != b"P5":
            raise ValueError("not a binary PGM (no P5 signature)")
        while len(tokens) < 3:
            match = _PGM_TOKEN.match(data, position)
            if match is None:
                raise ValueError("malformed header")
            tokens.append(int(match.group(1)))
            position = match.end()
        width, height, maxval = tokens
        if not (width > 0 and height > 0 and 0 < maxval < 65536):
            raise ValueError(f"bad header values {tokens}")
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype("u1")
        raster = data[position + 1 : position + 1 + width * height * dtype.itemsize]  # one whitespace byte first
        if len(raster) != width * height * dtype.itemsize:
            raise ValueError(f"truncated: {len(raster)} bytes of pixels for {width}x{height}")
    except ValueError as error:
        raise UserError(f"Cannot read the depth image {where}: {error}") from None
    return np.frombuffer(raster, dtype=dtype).reshape(height, width).astype(np.uint16)


def read_semseg(path: Path) -> dict[int, str]:
    """``semseg.v2.json``: object id -> label of each segment group."""
    data = _read_json(path, "the scan's object labels, 3RScan v2")
    groups = data.get("segGroups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise UserError(f"{path} has no segGroups list; is it a 3RScan semseg.v2.json?")
    labels: dict[int, str] = {}
    for number, group in enumerate(groups):
        ident = group.get("objectId", group.get("id")) if isinstance(group, dict) else None
        label = group.get("label") if isinstance(group, dict) else None
        if isinstance(ident, bool) or not isinstance(ident, int) or ident <= 0 or not isinstance(label, str):
            raise UserError(f"{path}: segGroups[{number}] needs a positive integer objectId and a label string.")
        if ident in labels:
            raise UserError(f"{path}: object id {ident} appears in two segGroups.")
        labels[ident] = label
    return labels


def read_annotated_ply(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The annotated mesh: ``[V, 3]`` vertices, ``[F, 3]`` triangles and ``[V]`` vertex object ids (0: none)."""
    from plyfile import PlyData, PlyParseError

    if not path.is_file():
        raise UserError(f"{path} is missing (the scan's annotated mesh, 3RScan v2).")
    try:
        ply = PlyData.read(str(path))
        vertex = ply["vertex"]
        names = set(vertex.data.dtype.names or ())
        if "objectId" not in names:
            raise UserError(f"{path} has no objectId vertex property; is it labels.instances.annotated.v2.ply?")
        vertices = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], axis=1)
        objects = np.asarray(vertex["objectId"], dtype=np.int64)
        face = ply["face"]
        key = next((name for name in ("vertex_indices", "vertex_index") if name in (face.data.dtype.names or ())), None)
        polygons = face[key] if key else None
    except (PlyParseError, KeyError, ValueError, OSError, IndexError) as error:
        raise UserError(f"Cannot read the mesh {path}: {error}") from None
    if polygons is None or len(polygons) == 0:
        raise UserError(f"{path} has no faces (vertex_indices); the instance maps need a mesh.")
    faces = _triangles(polygons)
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise UserError(f"{path}: a face refers to a vertex that does not exist.")
    return vertices, faces, objects


def _triangles(polygons: Any) -> np.ndarray:
    """Faces as triangles: polygons with more corners are split into fans."""
    if all(len(polygon) == 3 for polygon in polygons):  # 3RScan's meshes: triangles only
        return np.asarray(np.stack(list(polygons)), dtype=np.int64).reshape(-1, 3)
    triangles = []
    for polygon in polygons:
        corners = np.asarray(polygon, dtype=np.int64)
        for i in range(1, len(corners) - 1):
            triangles.append((corners[0], corners[i], corners[i + 1]))
    return np.asarray(triangles, dtype=np.int64).reshape(-1, 3)


def relationships_path(threedssg: Path) -> Path:
    """3DSSG's relationships.json: ``threedssg`` itself or the file of that name in the folder ``threedssg``."""
    path = Path(threedssg)
    return path / RELATIONSHIPS_FILE if path.is_dir() else path


def read_relationships(path: Path, scan_id: str) -> tuple[set[int], list[tuple[int, int, str]]]:
    """3DSSG's relationships.json for one scan: its object ids and ``(subject, object, predicate)`` triples."""
    data = _read_json(path, "3DSSG's relationships.json")
    scans = data.get("scans") if isinstance(data, dict) else None
    if not isinstance(scans, list):
        raise UserError(f'{path} is not 3DSSG\'s relationships.json (no "scans" list).')
    entries = [entry for entry in scans if isinstance(entry, dict) and str(entry.get("scan")) == scan_id]
    if not entries:
        raise UserError(
            f"Scan {scan_id} is not in {path} ({len(scans)} scans); is the scan folder named by its scan id "
            "(or pass scan_id)?"
        )
    objects: set[int] = set()
    triples: dict[tuple[int, int, str], None] = {}
    for entry in entries:  # a scan split into several entries is merged
        try:
            objects.update(int(key) for key in (entry.get("objects") or {}))
            for relation in entry.get("relationships") or []:
                subject, obj, _index, predicate = relation
                if not isinstance(predicate, str):
                    raise ValueError(f"predicate {predicate!r} is not a string")
                triples.setdefault((int(subject), int(obj), predicate), None)
        except (TypeError, ValueError) as error:
            raise UserError(
                f"{path}: scan {scan_id} has a malformed object or relationship "
                f"(expected [subject, object, predicate index, predicate]): {error}"
            ) from None
    return objects, list(triples)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UserError(f"{path} is missing ({what}).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not valid JSON: {error}") from None
