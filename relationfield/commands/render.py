"""``relationfield render``: a trained run's relevancy for a query, rendered along a camera path into a video."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from relationfield.errors import UserError
from relationfield.progress import rich_progress

if TYPE_CHECKING:
    from relationfield.query import FieldQuery
    from relationfield.relevancy_image import RelevancyRequest
    from relationfield.relevancy_video import CameraPath

DEFAULT_FRAMES = 48
"""Frames of the interpolated path used when neither --camera-path nor --interpolate is given."""
MASK_VOXELS = 3.0
"""A referring query's winner covers the pixels within this many segmentation voxels of its points."""


@dataclass
class Render:
    """Render a trained run's relevancy along a camera path into an mp4: every frame is the RGB render with
    the turbo-coloured relevancy over the pixels above --threshold, as the viewer composites it. Give one
    query: --query (a referring query shows its winning instance: the geometric mean of the subject's and
    the relation's relevancy, on that instance's pixels only; without a predicate it is an object query),
    --relation with --reference, or --object."""

    load_config: Path
    """config.yml of a relationfield or relationfield-lite run."""
    output: Path
    """The video to write (OUT.mp4); with --frames-only, the folder for the PNG frames (OUT.mp4 means OUT/)."""
    query: str | None = None
    """A referring query ("mug standing on desk") or an object query ("mug")."""
    relation: str | None = None
    """A relation query ("standing on"), relative to --reference; phrases after ';' are extra negatives."""
    reference: str | None = None
    """The reference object of --relation: text ("table") or a node id of the scene graph ("#3")."""
    object: str | None = None
    """An object query ("chair"); phrases after ';' are extra negatives."""
    camera_path: Path | None = None
    """camera_path.json exported by nerfstudio's viewer, as `ns-render camera-path` reads it."""
    interpolate: int | None = None
    """Frames interpolated between training cameras (the default path: 48 frames, without --camera-path)."""
    downscale: float | None = None
    """Divide the path's resolution by this (default: down to about 480x270 pixels' worth; 1: full size)."""
    threshold: float = 0.5
    """Pixels whose relevancy is above this are coloured (the viewer's "Relevancy threshold")."""
    fps: float | None = None
    """Frames per second (default: the camera path's duration, else 24)."""
    frames_only: bool = False
    """Write only the PNG frames, to the folder --output names, and no video."""
    keep_frames: bool = False
    """Keep the video's PNG frames (in OUT_frames/, next to OUT.mp4)."""
    graph: Path | None = None
    """Folder of an export (scene_graph.json + points.ply) to take the instances of --query/--reference from."""

    def main(self) -> None:
        from relationfield.query import FieldQuery
        from relationfield.relevancy_video import encode_mp4, load_camera_path, remove_frames, render_frames

        self._check_arguments()
        # a bad camera path fails before the (slow) run is loaded
        path = None if self.camera_path is None else load_camera_path(self.camera_path)
        start = time.perf_counter()
        query = FieldQuery.load(self.load_config)
        frames_dir = self.frames_dir()
        bar, progress = rich_progress()
        with bar:
            request, what = self._request(query, progress)
            path = (self._interpolated(query) if path is None else path).rescaled(self.downscale)
            width, height = int(path.cameras.width[0]), int(path.cameras.height[0])
            bar.console.print(f"rendering {what}: {len(path)} frames at {width}x{height}")
            frames = render_frames(
                query, path, request, self.threshold, frames_dir, progress("rendering frames", len(path))
            )
            if not self.frames_only:
                codec = encode_mp4(frames, self.output, self.fps or path.fps(), progress("encoding", len(frames)))
        seconds = time.perf_counter() - start
        if self.frames_only:
            print(f"{what}: {len(frames)} frames in {frames_dir}/ ({seconds:.1f} s)")
            return
        if not self.keep_frames:
            remove_frames(frames)
        print(f"{what}: {self.output} ({codec}, {len(frames)} frames, {seconds:.1f} s)")

    def frames_dir(self) -> Path:
        """Where the PNG frames go: --output itself with --frames-only (minus a .mp4 suffix), else OUT_frames/."""
        if self.frames_only:
            return self.output.with_suffix("") if self.output.suffix.lower() == ".mp4" else self.output
        return self.output.with_name(f"{self.output.stem}_frames")

    def _check_arguments(self) -> None:
        kinds = [
            flag
            for flag, value in (("--query", self.query), ("--relation", self.relation), ("--object", self.object))
            if value is not None
        ]
        if not kinds:
            raise UserError(
                "give a query: --query 'mug standing on desk', --relation 'standing on' --reference table, "
                "or --object chair"
            )
        if len(kinds) > 1:
            raise UserError(f"give one query, not {' and '.join(kinds)}")
        if self.relation is not None and not (self.reference or "").strip():
            raise UserError("--relation needs --reference: the object the relation is to (text, or '#3' for node 3)")
        if self.reference is not None and self.relation is None:
            raise UserError("--reference goes with --relation (a referring --query names its reference itself)")
        if self.camera_path is not None and self.interpolate is not None:
            raise UserError("give --camera-path or --interpolate, not both")
        if self.interpolate is not None and self.interpolate < 1:
            raise UserError(f"--interpolate must be at least 1, not {self.interpolate}")
        if not 0.0 <= self.threshold < 1.0:
            raise UserError(f"--threshold must be in [0, 1), not {self.threshold}")
        if self.fps is not None and self.fps <= 0:
            raise UserError(f"--fps must be positive, not {self.fps}")
        if not self.frames_only and self.output.suffix.lower() != ".mp4":
            raise UserError(f"--output {self.output} must end in .mp4 (or pass --frames-only for a folder of PNGs)")
        if self.output.is_dir() and not self.frames_only:
            raise UserError(
                f"--output {self.output} is a folder; name the video file, e.g. {self.output}/relevancy.mp4"
            )

    def _interpolated(self, query: FieldQuery) -> CameraPath:
        """The path interpolated between the run's training views (--interpolate frames, or DEFAULT_FRAMES)."""
        from relationfield.relevancy_video import interpolated_path

        cameras = query.pipeline.datamanager.train_dataset.cameras
        return interpolated_path(cameras, self.interpolate or DEFAULT_FRAMES)

    def _request(self, query: FieldQuery, progress) -> tuple[RelevancyRequest, str]:
        """What the frames show, and its description; segments the scene (once, cached) when instances are needed."""
        from relationfield.graph_cache import segmented_scene
        from relationfield.query import (
            OBJECT_NEGATIVES,
            RELATION_NEGATIVES,
            find_reference,
            parse_query,
            sample_reference,
        )
        from relationfield.referring import parse_referring
        from relationfield.relevancy_image import RelevancyRequest
        from relationfield.vocab import predicate_vocab

        if self.object is not None:
            parse_query(self.object, OBJECT_NEGATIVES)  # an empty text fails here, not at the first frame
            return RelevancyRequest(object_text=self.object.strip()), f"object {self.object.strip()!r}"
        if self.relation is not None:
            text = self.relation.strip()
            parse_query(text, RELATION_NEGATIVES)
            scene = segmented_scene(query, self.load_config, self.graph, progress=progress)
            objects = _instances(query, scene)
            node = find_reference(query, objects, (self.reference or "").strip())
            labels = {n.id: n.label for n in scene.graph.nodes}
            request = RelevancyRequest(relation_text=text, reference=sample_reference(objects[node]))
            return request, f"relation {text!r} to {labels.get(node, 'object')} #{node}"
        assert self.query is not None
        parsed = parse_referring(self.query, [*predicate_vocab(), *query.relation_texts()])
        if not parsed.is_referring:
            assert parsed.subject is not None
            return RelevancyRequest(object_text=parsed.subject), f"object {parsed.subject!r}"
        scene = segmented_scene(query, self.load_config, self.graph, progress=progress)
        return _referring_request(query, scene, parsed)


def _instances(query: FieldQuery, scene) -> dict:
    """Node id -> points (model frame) of the segmented scene; an error when it has none."""
    objects = scene.instances(query)
    if not objects:
        raise UserError("the run's segmentation has no objects; train longer or check the labels")
    return objects


def _referring_request(query: FieldQuery, scene, parsed) -> tuple[RelevancyRequest, str]:
    """The winning instance of a referring query: its subject and relation relevancy, on its pixels only."""
    import torch

    from relationfield.extraction import ExtractionConfig
    from relationfield.query import answer_referring, sample_reference
    from relationfield.relevancy_image import InstanceMask, RelevancyRequest

    objects = _instances(query, scene)
    answer = answer_referring(query, objects, parsed)
    best = answer.best
    if best is None or not best.candidate or best.reference is None:
        raise UserError(f"no object fits {parsed.text()!r}: nothing matches besides the reference")
    points = torch.cat(list(objects.values()))
    extent = float((points.max(0).values - points.min(0).values).max())  # the segmentation grid's longest side
    tolerance = MASK_VOXELS * extent / ExtractionConfig().voxels_per_side
    request = RelevancyRequest(
        object_text=parsed.subject or "",
        relation_text=parsed.predicate or "",
        reference=sample_reference(objects[best.reference]),
        instance=InstanceMask.of(objects, best.node, tolerance),
    )
    labels = {n.id: n.label for n in scene.graph.nodes}
    winner, ref = f"{labels.get(best.node, 'object')} #{best.node}", f"{labels.get(best.reference)} #{best.reference}"
    return request, f"{parsed.text()!r}: {winner} ({best.combined:.3f}), {parsed.predicate} {ref}"
