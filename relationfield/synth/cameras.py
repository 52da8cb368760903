"""Camera placement: look-at views from varied positions and heights inside the room.

Each frame looks at one target object: the object seen in the fewest frames so far (non-structural
objects first, ties in a seed-shuffled order), so coverage stays balanced and every object is seen
in several frames. Frames alternate between wide views, from across the room, and closer views
sized to the target. The camera stands on the room side of the target at a random height (0.75 to
2.1 m, wide views from 1.1 m); candidates inside or next to furniture are rejected and the one that
sees most of the target (rays to points on its surface) wins. Cameras are never rolled.
"""

from __future__ import annotations

import numpy as np

from relationfield.synth.render import Intrinsics, Renderer, look_at
from relationfield.synth.scene import Scene, SceneObject

MIN_PIXELS_SEEN = 4
"""An object counts as seen in a frame when it covers at least this many pixels."""

_CANDIDATES = 24
_SURFACE_SAMPLES = 16
_INTERIOR_MARGIN = 0.3
_FURNITURE_CLEARANCE = 0.2


class CameraPlanner:
    """Chooses one camera per frame, balancing how often each object has been seen."""

    def __init__(self, scene: Scene, renderer: Renderer, intrinsics: Intrinsics, rng: np.random.Generator) -> None:
        self.scene = scene
        self.renderer = renderer
        self.intr = intrinsics
        self.rng = rng
        self.seen = {o.id: 0 for o in scene.objects}
        order = rng.permutation(len(scene.objects))
        self.rank = {scene.objects[int(i)].id: r for r, i in enumerate(order)}
        self.samples = {o.id: self._surface_points(o) for o in scene.objects}
        self.tan_half = intrinsics.width / (2 * intrinsics.fx)

    def _surface_points(self, obj: SceneObject) -> np.ndarray:
        """Points on the object's visible-ish surface (face centroids), drawn once."""
        faces = np.flatnonzero(self.renderer.face_ids == obj.id)
        tris = self.renderer.mesh.triangles[faces]
        centroids = tris.mean(axis=1)
        if obj.structural:
            # keep points well inside the room so rays from the interior can reach them
            room = self.scene.room
            lo = np.array([-room.width / 2, -room.depth / 2, 0.0]) - 1e-6
            hi = np.array([room.width / 2, room.depth / 2, room.height]) + 1e-6
            centroids = centroids[np.all((centroids >= lo) & (centroids <= hi), axis=1)]
        count = min(_SURFACE_SAMPLES, len(centroids))
        pick = self.rng.choice(len(centroids), size=count, replace=False)
        return centroids[np.sort(pick)]

    def next_target(self) -> SceneObject:
        """The object seen in the fewest frames so far (non-structural first, then the shuffled order)."""
        return min(self.scene.objects, key=lambda o: (self.seen[o.id], int(o.structural), self.rank[o.id]))

    def record(self, ids: np.ndarray) -> None:
        """Count which objects a rendered frame shows."""
        counts = np.bincount(ids.ravel(), minlength=len(self.scene.objects) + 1)
        for obj in self.scene.objects:
            if counts[obj.id] >= MIN_PIXELS_SEEN:
                self.seen[obj.id] += 1

    def camera_for(self, target: SceneObject, wide: bool) -> np.ndarray:
        """A camera-to-world matrix looking at ``target``: from across the room when ``wide``, else closer."""
        room = self.scene.room
        box = target.aabb
        centre = box.centre
        if target.structural:
            centre = self._structural_focus(target)
        radius = float(np.linalg.norm(box.extents)) / 2 if not target.structural else 1.0
        lo = np.array([-room.width / 2 + _INTERIOR_MARGIN, -room.depth / 2 + _INTERIOR_MARGIN, 0.75])
        hi = np.array(
            [room.width / 2 - _INTERIOR_MARGIN, room.depth / 2 - _INTERIOR_MARGIN, min(2.1, room.height - 0.35)]
        )
        low = 1.1 if wide else lo[2]
        inward = -centre[:2] / max(float(np.linalg.norm(centre[:2])), 1e-6)
        base_angle = float(np.arctan2(inward[1], inward[0]))
        best: tuple[float, np.ndarray] | None = None
        for _ in range(_CANDIDATES):
            if wide:
                dist = float(self.rng.uniform(2.5, 6.0))
            else:
                dist = float(np.clip(radius / (self.tan_half * self.rng.uniform(0.3, 0.75)), 0.9, 4.0))
            angle = base_angle + self.rng.uniform(-0.9, 0.9)
            height = self.rng.uniform(low, hi[2])
            look = centre + self.rng.uniform(-0.25, 0.25, size=3) * (box.extents if not target.structural else 0.0)
            eye = np.array([look[0] + dist * np.cos(angle), look[1] + dist * np.sin(angle), height])
            eye = np.clip(eye, lo, hi)
            horizontal = float(np.linalg.norm(eye[:2] - look[:2]))
            if horizontal < 0.05:
                continue  # looking straight down or up has no defined roll
            score = self._visibility(eye, look, target) + 0.05 * min(horizontal, 3.0) / 3.0
            if horizontal < 0.45 or self._blocked(eye):
                score -= 2.0  # only as a last resort
            if best is None or score > best[0]:
                best = (score, look_at(eye, look))
            if score >= 0.9:
                break
        if best is None:
            corner = np.array([lo[0], lo[1], (lo[2] + hi[2]) / 2])
            return look_at(corner, np.array([0.0, 0.0, corner[2]]))
        return best[1]

    def _structural_focus(self, obj: SceneObject) -> np.ndarray:
        """A point to look at for the floor, a wall or the ceiling: in front of it, inside the room."""
        room = self.scene.room
        c = obj.aabb.centre.copy()
        c[0] = np.clip(c[0], -room.width / 2 + 0.5, room.width / 2 - 0.5)
        c[1] = np.clip(c[1], -room.depth / 2 + 0.5, room.depth / 2 - 0.5)
        c[2] = np.clip(c[2], 0.0, room.height)
        if obj.label == "wall":
            c[2] = room.height * 0.6
        return c

    def _blocked(self, eye: np.ndarray) -> bool:
        """Whether ``eye`` is inside or within the clearance of a non-structural object's aabb."""
        return any(
            bool(
                np.all(eye >= np.asarray(o.aabb.min) - _FURNITURE_CLEARANCE)
                and np.all(eye <= np.asarray(o.aabb.max) + _FURNITURE_CLEARANCE)
            )
            for o in self.scene.objects
            if not o.structural
        )

    def _visibility(self, eye: np.ndarray, look: np.ndarray, target: SceneObject) -> float:
        """Fraction of the target's sample points that are in view and not occluded."""
        points = self.samples[target.id]
        c2w = look_at(eye, look)
        cam = (points - eye) @ c2w[:3, :3]
        in_front = cam[:, 2] < -1e-3
        u = self.intr.fx * cam[:, 0] / np.maximum(-cam[:, 2], 1e-6)
        v = self.intr.fy * cam[:, 1] / np.maximum(-cam[:, 2], 1e-6)
        in_view = in_front & (np.abs(u) < self.intr.width / 2) & (np.abs(v) < self.intr.height / 2)
        dirs = points - eye
        hit = self.renderer.object_at(np.broadcast_to(eye, dirs.shape).copy(), dirs)
        return float(np.mean(in_view & (hit == target.id)))
