"""``relationfield convert 3rscan|scannetpp|replica``: a public dataset's scan as a capture with ground truth."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

import tyro

if TYPE_CHECKING:
    from relationfield.convert.capture import CaptureSummary


@dataclass(kw_only=True)
class _Frames:
    """Frame selection and size, shared by every converter."""

    output: Path
    """Capture directory to write (transforms.json, images/, depth/, ground_truth/)."""
    stride: int = 1
    """Keep every stride-th frame of the scan."""
    max_frames: int | None = None
    """Keep at most this many frames (after --stride), evenly spread; default all."""
    downscale: int = 1
    """Shrink images, depth and intrinsics by this integer factor."""
    overwrite: bool = False
    """Replace a capture already in --output."""


def _report(summary: CaptureSummary) -> None:
    """Print a converter's summary (and the notes of those that have them)."""
    skipped = f", {summary.skipped} frames skipped (invalid pose)" if summary.skipped else ""
    print(
        f"Wrote {summary.frames} frames{skipped}, {summary.objects} objects and {summary.relationships} "
        f"ground-truth relationships to {summary.output}"
    )
    for note in getattr(summary, "notes", ()):
        print(f"note: {note}")


@dataclass(kw_only=True)
class Convert3RScan(_Frames):
    """Convert a 3RScan scan (sequence/ or sequence.zip, semseg.v2.json, labels.instances.annotated.v2.ply) and
    its 3DSSG relationships into a capture with depth, instance maps and ground truth."""

    scan: Path
    """The scan's folder (named by its scan id)."""
    threedssg: Annotated[Path | None, tyro.conf.arg(name="3dssg")] = None
    """3DSSG's relationships.json (or the folder holding it); default: no relationships."""

    def main(self) -> None:
        from relationfield.convert.rscan import convert_3rscan

        _report(
            convert_3rscan(
                self.scan, self.output, self.threedssg, self.stride, self.max_frames, self.downscale, self.overwrite
            )
        )


@dataclass(kw_only=True)
class ConvertScanNetpp(_Frames):
    """Convert a ScanNet++ scene (DSLR images and their nerfstudio transforms, undistorted to a pinhole camera;
    the annotated mesh's instances and labels) into a capture with rendered depth and instance maps."""

    scene: Path
    """The scene's folder (holding dslr/ and scans/)."""

    def main(self) -> None:
        from relationfield.convert.scannetpp import convert_scannetpp

        _report(
            convert_scannetpp(self.scene, self.output, self.stride, self.max_frames, self.downscale, self.overwrite)
        )


@dataclass(kw_only=True)
class ConvertReplica(_Frames):
    """Convert a Replica scene in NICE-SLAM's layout (results/frame*.jpg, results/depth*.png, traj.txt) and,
    where given, its semantic mesh into a capture with depth and ground truth."""

    scene: Path
    """The scene's folder (holding results/ and traj.txt)."""
    mesh: Path | None = None
    """Replica's semantic mesh for objects and instance maps; default: SCENE/habitat/mesh_semantic.ply when it
    exists (without one the capture has no ground-truth objects)."""
    info: Path | None = None
    """Replica's habitat/info_semantic.json (the objects' classes); default: next to --mesh."""

    def main(self) -> None:
        from relationfield.convert.replica import convert_replica

        _report(
            convert_replica(
                self.scene,
                self.output,
                self.mesh,
                self.info,
                self.stride,
                self.max_frames,
                self.downscale,
                self.overwrite,
            )
        )


ConvertTarget = Union[  # noqa: UP007  (tyro reads subcommands from a Union)
    Annotated[Convert3RScan, tyro.conf.subcommand("3rscan")],
    Annotated[ConvertScanNetpp, tyro.conf.subcommand("scannetpp")],
    Annotated[ConvertReplica, tyro.conf.subcommand("replica")],
]
