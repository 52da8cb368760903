"""Relevancy along a camera path (``relationfield render``): the cameras, the composited frames and the mp4.

A path is a ``camera_path.json`` exported by nerfstudio's viewer (read with nerfstudio's own
``get_path_from_json``, as ``ns-render camera-path`` reads it; its crop box is not applied), or frames
interpolated between training cameras (nerfstudio's ``get_interpolated_camera_path``). Each frame is the
RGB render with the request's relevancy composited over it (:mod:`relationfield.relevancy_image`, as the
viewer composites it), written as a PNG; the PNGs are then encoded with PyAV (H.264 when its bundled
ffmpeg has libx264, else MPEG-4 part 2), so no ffmpeg binary is needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from relationfield.atomic import atomic_write
from relationfield.errors import UserError
from relationfield.extraction.surface import render_scale
from relationfield.query import FieldQuery
from relationfield.relevancy_image import RelevancyRequest, composite_relevancy, pixel_relevancy

if TYPE_CHECKING:
    from nerfstudio.cameras.cameras import Cameras

__all__ = [
    "CameraPath",
    "Frame",
    "encode_mp4",
    "interpolated_path",
    "load_camera_path",
    "render_frame",
    "render_frames",
]

DEFAULT_FPS = 24.0
"""Frame rate of an interpolated path, or of a camera path without ``seconds``."""
AUTO_PIXELS = 480 * 270
"""Without a given downscale, frames are rendered down to about this many pixels (a CPU renders one in seconds)."""
KEYFRAMES = 8
"""Training cameras an interpolated path passes through (evenly spread, visited in nearest-neighbour order)."""
CODECS = ("libx264", "mpeg4")
"""Video encoders tried in this order."""
X264_OPTIONS = {"crf": "18"}
"""libx264's quality (its default, 23, smears the colour map's speckles on small frames)."""
MPEG4_BIT_RATE = 8_000_000
"""MPEG-4 part 2's bit rate (its default of 200 kbit/s smears the colour map)."""
PATH_CAMERA_TYPES = ("perspective", "fisheye", "equirectangular")
"""Camera types of a camera path rendered here (stereo types need ``ns-render``'s two-eye handling)."""

Advance = Callable[[int], None]


@dataclass
class CameraPath:
    """The cameras of a video (nerfstudio frame) and how long it lasts."""

    cameras: Cameras
    seconds: float | None = None
    """The path's duration (None: play it at ``DEFAULT_FPS``)."""

    def __len__(self) -> int:
        return int(self.cameras.shape[0])

    def fps(self) -> float:
        """Frames per second that make the video last ``seconds``."""
        return len(self) / self.seconds if self.seconds else DEFAULT_FPS

    def rescaled(self, downscale: float | None) -> CameraPath:
        """A copy with the resolution divided by ``downscale`` (None: down to about ``AUTO_PIXELS``)."""
        cameras = self.cameras[torch.arange(len(self))]  # indexing copies, so the caller's path keeps its size
        if downscale is None:
            scale = render_scale(int(cameras.width[0]) * int(cameras.height[0]), AUTO_PIXELS)
        elif downscale <= 0:
            raise UserError(f"--downscale must be positive, not {downscale}")
        else:
            scale = 1.0 / downscale
        if scale != 1.0:
            cameras.rescale_output_resolution(scale)
        if int(cameras.width.min()) < 2 or int(cameras.height.min()) < 2:
            raise UserError(f"--downscale {downscale} leaves frames under 2 pixels; use a smaller one")
        return CameraPath(cameras, self.seconds)


def load_camera_path(path: Path) -> CameraPath:
    """A ``camera_path.json`` of nerfstudio's viewer, with a clear error for a missing or malformed file."""
    from nerfstudio.cameras.camera_paths import get_path_from_json  # lazy: nerfstudio is slow to import

    path = Path(path)
    if not path.is_file():
        raise UserError(f"camera path {path} does not exist (export one from the viewer's Render tab)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"camera path {path} is not JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("camera_path"), list) or not data["camera_path"]:
        raise UserError(f"camera path {path} has no cameras: it needs a non-empty 'camera_path' list")
    kind = str(data.get("camera_type", "perspective")).lower()
    if kind not in PATH_CAMERA_TYPES:
        raise UserError(f"camera path {path}: camera type {kind!r} is not supported; use one of {PATH_CAMERA_TYPES}")
    try:
        cameras = get_path_from_json(data)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        needs = "render_width, render_height and, per camera, camera_to_world (16 numbers) and fov"
        raise UserError(
            f"camera path {path} is malformed ({type(error).__name__}: {error}); it needs {needs}"
        ) from error
    seconds = data.get("seconds")
    return CameraPath(cameras, float(seconds) if isinstance(seconds, (int, float)) and seconds > 0 else None)


def interpolated_path(cameras: Cameras, frames: int) -> CameraPath:
    """``frames`` cameras interpolated between up to ``KEYFRAMES`` of ``cameras`` (the training views)."""
    from nerfstudio.cameras.camera_paths import get_interpolated_camera_path

    if frames < 1:
        raise UserError(f"--interpolate must be at least 1, not {frames}")
    count = int(cameras.shape[0])
    keys = np.unique(np.linspace(0, count - 1, min(count, KEYFRAMES)).round().astype(int))
    if len(keys) < 2:
        return CameraPath(cameras[torch.zeros(frames, dtype=torch.long)])
    steps = math.ceil((frames - 1) / (len(keys) - 1)) + 1
    path = get_interpolated_camera_path(cameras[torch.from_numpy(keys)], steps=steps, order_poses=True)
    # each transition starts at the previous one's end: drop the repeats, then spread the frames evenly
    distinct = [i for i in range(int(path.shape[0])) if i == 0 or i % steps != 0]
    picks = np.linspace(0, len(distinct) - 1, frames).round().astype(int)
    return CameraPath(path[torch.tensor([distinct[i] for i in picks])])


@dataclass
class Frame:
    """One rendered camera: colours in [0, 1] ([H, W, 3]) and the relevancy ([H, W])."""

    rgb: Tensor
    relevancy: Tensor
    composited: Tensor


@torch.no_grad()
def render_frame(query: FieldQuery, camera: Cameras, request: RelevancyRequest, threshold: float) -> Frame:
    """Render one camera (a ``Cameras`` of one) and composite ``request``'s relevancy over its RGB."""
    bundle = camera.generate_rays(camera_indices=0).to(query.device)
    with query.model.rendering(features=False):  # features come from the heads at surface points, not rendered
        outputs = query.model.get_outputs_for_camera_ray_bundle(bundle)
    relevancy = pixel_relevancy(query, bundle, outputs, request)
    rgb = outputs["rgb"].clamp(0, 1).float()
    return Frame(rgb.cpu(), relevancy.cpu(), composite_relevancy(rgb, relevancy, threshold).cpu())


def to_uint8(image: Tensor) -> np.ndarray:
    """[H, W, 3] colours in [0, 1] -> 8-bit RGB."""
    return (image.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def render_frames(
    query: FieldQuery,
    path: CameraPath,
    request: RelevancyRequest,
    threshold: float,
    frames_dir: Path,
    advance: Advance = lambda _step: None,
) -> list[Path]:
    """Render every camera of ``path`` to ``frames_dir/00000.png``, ... (written as they are done)."""
    from PIL import Image

    frames_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(len(path)):
        frame = render_frame(query, path.cameras[index : index + 1], request, threshold)
        target = frames_dir / f"{index:05d}.png"
        with atomic_write(target) as handle:  # an interrupted run leaves only whole frames
            Image.fromarray(to_uint8(frame.composited)).save(handle, format="PNG")
        written.append(target)
        advance(1)
    return written


def encode_mp4(frames: list[Path], output: Path, fps: float, advance: Advance = lambda _step: None) -> str:
    """Encode the PNG ``frames`` into ``output`` (replaced only when complete); returns the codec used.

    Raises ``UserError`` naming the frames' folder, which is kept, when encoding fails.
    """
    import av
    from PIL import Image

    if not frames:
        raise UserError("no frames to encode")
    codec = next((name for name in CODECS if _has_encoder(av, name)), None)
    if codec is None:
        raise _encoding_error(frames, f"PyAV's ffmpeg has none of the encoders {CODECS}")
    try:
        with atomic_write(output) as handle, av.open(handle, "w", format="mp4") as container:
            stream: Any = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
            first = np.asarray(Image.open(frames[0]).convert("RGB"))
            # 4:2:0 chroma needs even sizes: an odd last row or column is dropped
            height, width = first.shape[0] // 2 * 2, first.shape[1] // 2 * 2
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = dict(X264_OPTIONS)
            else:
                stream.bit_rate = MPEG4_BIT_RATE
            for path in frames:
                image = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB"))[:height, :width])
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
                advance(1)
            container.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError, ValueError) as error:
        raise _encoding_error(frames, f"{type(error).__name__}: {error}") from error
    return codec


def _has_encoder(av: Any, name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # PyAV raises its own error types for an unknown codec, varying across versions
        return False
    return True


def _encoding_error(frames: list[Path], reason: str) -> UserError:
    folder = frames[0].parent
    return UserError(f"could not write the video ({reason}); the {len(frames)} frames are kept in {folder}/")


def remove_frames(frames: list[Path]) -> None:
    """Delete the PNG frames and their folder once the video holds them (the folder only if it is empty)."""
    for path in frames:
        path.unlink(missing_ok=True)
    if frames and not any(frames[0].parent.iterdir()):
        frames[0].parent.rmdir()
