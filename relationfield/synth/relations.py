"""Ground-truth relations derived from the scene's geometry.

Relations are directed triples ``(subject, object, predicate)`` with 3DSSG predicate names. They are
computed from the objects' axis-aligned bounding boxes (aabbs), their parts and their resting kind,
never from lists written by hand; every ordered pair that satisfies a rule gets that predicate, and
a pair may get several. World frame: metres, +z up. "Structural" objects are the floor, the walls and
the ceiling; "A", "B" are two distinct objects.

Support (``CONTACT_TOL`` = 0.02 m, ``MIN_OVERLAP`` = 0.01 m)
    A support surface of B is the top face of one of B's box parts or upright cylinder parts (the
    floor's top is such a face). A is in *support contact* with B when A is not structural, the bottom
    of A's aabb is within ``CONTACT_TOL`` of the height of a support surface of B, and A's aabb overlaps
    that surface's rectangle by at least ``MIN_OVERLAP`` along x and along y. Then:

    * ``A supported by B``;
    * ``A standing on B`` when A rests upright (chairs, cups, lamps, books in a shelf, boxes, shelves
      on the floor, ...), ``A lying on B`` when A rests flat (pillows, lying books, laptops).

Wall contact
    When A is not structural, B is a wall, the gap between their aabbs is at most ``CONTACT_TOL`` and
    the aabbs overlap by at least ``MIN_OVERLAP`` along both axes parallel to the wall: ``A hanging on B``
    for hung objects (pictures, clocks), ``A attached to B`` for objects fixed to the wall (shelves, tvs).
    Furniture that merely stands near a wall gets no wall relation.

Inside
    ``A inside B`` when A and B are not structural, A's aabb lies within B's aabb grown by
    ``CONTACT_TOL``, and B encloses A from above: some part of B has its bottom at or above A's top
    (within ``CONTACT_TOL``) and overlaps A by at least ``MIN_OVERLAP`` in x and y (books in a shelf).

Close by (``CLOSE_BY_GAP`` = 0.3 m)
    ``A close by B`` and ``B close by A`` when A and B are not structural, the gap between their aabbs
    is at most ``CLOSE_BY_GAP``, neither is in support contact with the other and neither is inside
    the other.

Comparatives (``NEIGHBOURHOOD_GAP`` = 1.0 m, ``VOLUME_RATIO`` = 2.0, ``HEIGHT_EPS`` = 0.005 m)
    Only for non-structural pairs whose aabb gap is at most ``NEIGHBOURHOOD_GAP``:

    * ``A bigger than B`` when volume(aabb A) >= ``VOLUME_RATIO`` x volume(aabb B), and then
      ``B smaller than A`` (the two are exact converses);
    * ``A higher than B`` when the bottom of A is at or above the top of B (within ``HEIGHT_EPS``),
      i.e. A lies entirely above B, and then ``B lower than A``.

Same as
    ``A same as B`` and ``B same as A`` when A and B are not structural and identical: the same label,
    the same parts in their own frame and the same appearance (equal ``model`` signatures), at any
    distance.

Structural objects only ever appear as the object of support and wall relations.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from relationfield.synth.geometry import Aabb, part_aabb
from relationfield.synth.scene import SceneObject, Surface

CONTACT_TOL = 0.02
MIN_OVERLAP = 0.01
CLOSE_BY_GAP = 0.3
NEIGHBOURHOOD_GAP = 1.0
VOLUME_RATIO = 2.0
HEIGHT_EPS = 0.005

PREDICATES: tuple[str, ...] = (
    "supported by",
    "standing on",
    "lying on",
    "hanging on",
    "attached to",
    "inside",
    "close by",
    "bigger than",
    "smaller than",
    "higher than",
    "lower than",
    "same as",
)
"""The predicates this generator emits, in the order relations are sorted by."""

Relation = tuple[int, int, str]


def _on_surface(a: Aabb, s: Surface) -> bool:
    if abs(a.min[2] - s.z) > CONTACT_TOL:
        return False
    ox = min(a.max[0], s.xmax) - max(a.min[0], s.xmin)
    oy = min(a.max[1], s.ymax) - max(a.min[1], s.ymin)
    return ox >= MIN_OVERLAP and oy >= MIN_OVERLAP


def supports(a: SceneObject, b: SceneObject, surfaces: list[Surface] | None = None) -> bool:
    """Whether ``a`` is in support contact with ``b`` (``a`` rests on ``b``)."""
    if a.structural or a.id == b.id:
        return False
    return any(_on_surface(a.aabb, s) for s in (surfaces if surfaces is not None else b.surfaces()))


def touches_wall(a: SceneObject, wall: SceneObject) -> bool:
    """Whether ``a``'s aabb touches the wall slab's aabb, overlapping it along the wall's face."""
    if a.structural or wall.label != "wall" or a.aabb.gap(wall.aabb) > CONTACT_TOL:
        return False
    normal = int(np.argmin(wall.aabb.extents))
    overlap = a.aabb.overlap(wall.aabb)
    return all(overlap[i] >= MIN_OVERLAP for i in range(3) if i != normal)


def inside(a: SceneObject, b: SceneObject) -> bool:
    """Whether ``a`` lies within ``b``'s aabb with a part of ``b`` covering it from above."""
    if a.structural or b.structural or a.id == b.id or not b.aabb.contains(a.aabb, CONTACT_TOL):
        return False
    for part in b.parts:
        box = part_aabb(part)
        ov = box.overlap(a.aabb)
        if box.min[2] >= a.aabb.max[2] - CONTACT_TOL and ov[0] >= MIN_OVERLAP and ov[1] >= MIN_OVERLAP:
            return True
    return False


def derive_relations(objects: Iterable[SceneObject]) -> list[Relation]:
    """All relations among ``objects`` by the rules of this module, sorted by subject, object, predicate."""
    objs = list(objects)
    surfaces = {o.id: o.surfaces() for o in objs}
    support = {(a.id, b.id) for a in objs for b in objs if supports(a, b, surfaces[b.id])}
    contained = {(a.id, b.id) for a in objs for b in objs if inside(a, b)}
    rels: set[Relation] = set()
    for a in objs:
        for b in objs:
            if a.id == b.id:
                continue
            pair = (a.id, b.id)
            if pair in support:
                rels.add((a.id, b.id, "supported by"))
                if a.rest in ("standing", "fixed"):
                    rels.add((a.id, b.id, "standing on"))
                elif a.rest == "lying":
                    rels.add((a.id, b.id, "lying on"))
            if touches_wall(a, b):
                if a.rest == "hanging":
                    rels.add((a.id, b.id, "hanging on"))
                elif a.rest == "fixed":
                    rels.add((a.id, b.id, "attached to"))
            if a.structural or b.structural:
                continue
            if pair in contained:
                rels.add((a.id, b.id, "inside"))
            gap = a.aabb.gap(b.aabb)
            reverse = (b.id, a.id)
            if (
                gap <= CLOSE_BY_GAP
                and pair not in support
                and reverse not in support
                and pair not in contained
                and reverse not in contained
            ):
                rels.add((a.id, b.id, "close by"))
            if gap <= NEIGHBOURHOOD_GAP:
                if a.aabb.volume >= VOLUME_RATIO * b.aabb.volume:
                    rels.add((a.id, b.id, "bigger than"))
                    rels.add((b.id, a.id, "smaller than"))
                if a.aabb.min[2] >= b.aabb.max[2] - HEIGHT_EPS:
                    rels.add((a.id, b.id, "higher than"))
                    rels.add((b.id, a.id, "lower than"))
            if a.model == b.model:
                rels.add((a.id, b.id, "same as"))
    order = {p: i for i, p in enumerate(PREDICATES)}
    return sorted(rels, key=lambda r: (r[0], r[1], order[r[2]]))
