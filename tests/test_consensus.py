"""Relations pooled over frames: mask identity from depth and poses, the pooling rules, the store and the
data manager's use of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relationfield.errors import UserError
from relationfield.labels.consensus import pool_relations, relation_consensus, tracks
from relationfield.labels.gt_labeler import instance_paths, label_from_ground_truth, read_ground_truth
from relationfield.labels.identity import FrameGeometry, mask_points, same_object
from relationfield.labels.store import IGNORED_RELATION, LabelStore


def capture_geometry(capture: Path, names: list[str]):
    """``geometry(f)`` for a synthetic capture's frames ``names`` (metres; depth PNGs in millimetres)."""
    meta = json.loads((capture / "transforms.json").read_text())
    by_name = {frame["file_path"]: frame for frame in meta["frames"]}

    def geometry(index: int) -> FrameGeometry:
        frame = by_name[names[index]]
        depth = np.asarray(Image.open(capture / frame["depth_file_path"]), dtype=np.float64) * 1e-3
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)[:3]
        return FrameGeometry(depth, (meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"]), c2w)

    return geometry


def mask_owners(capture: Path, store: LabelStore) -> np.ndarray:
    """The ground-truth object most of each global mask's pixels belong to."""
    owners = []
    for frame, path in enumerate(instance_paths(capture, store.frame_names)):
        instances = np.asarray(Image.open(path))
        segments = store.segments[frame].numpy()
        for k in range(1, int(store.mask_offsets[frame + 1] - store.mask_offsets[frame]) + 1):
            ids = instances[segments == k]
            owners.append(int(np.bincount(ids[ids > 0]).argmax()) if (ids > 0).any() else -1)
    return np.array(owners)


def test_back_projection_follows_nerfstudio_cameras():
    """A pixel's back-projected point lies on the ray nerfstudio's Cameras cast through that pixel, at its depth."""
    from nerfstudio.cameras.cameras import Cameras, CameraType

    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    c2w = np.concatenate([q * np.sign(np.linalg.det(q)), rng.normal(size=(3, 1))], axis=1)
    depth = rng.uniform(1.0, 3.0, size=(6, 8))
    fx, fy, cx, cy = 7.0, 6.5, 4.2, 2.9
    segments = np.zeros((6, 8), dtype=np.uint8)
    segments[2, 5] = 1  # a one-pixel mask: nothing to erode, one point
    (point,) = mask_points(segments, 1, FrameGeometry(depth, (fx, fy, cx, cy), c2w))[0]
    cameras = Cameras(
        camera_to_worlds=torch.tensor(c2w, dtype=torch.float32)[None],
        fx=fx, fy=fy, cx=cx, cy=cy, width=8, height=6, camera_type=CameraType.PERSPECTIVE,
    )  # fmt: skip
    rays = cameras.generate_rays(camera_indices=0, keep_shape=True)
    origin, direction = rays.origins[2, 5].double().numpy(), rays.directions[2, 5].double().numpy()
    along_axis = -direction @ c2w[:, 2]  # nerfstudio's cameras look along -z
    np.testing.assert_allclose(point, origin + direction * depth[2, 5] / along_axis, atol=1e-5)


def test_same_object_across_views_of_a_synthetic_capture(synth_capture: Path, labels_dir: Path):
    store = LabelStore.open(labels_dir)
    owners = mask_owners(synth_capture, store)
    segments = [seg.numpy() for seg in store.segments]
    counts = (store.mask_offsets[1:] - store.mask_offsets[:-1]).tolist()
    matches = same_object(segments, counts, capture_geometry(synth_capture, store.frame_names)).tocoo()
    frame = store.mask_frame.numpy()
    other = matches.row != matches.col
    rows, cols = matches.row[other], matches.col[other]
    assert not (frame[rows] == frame[cols]).any()  # a frame's masks never match each other
    same = owners[rows] == owners[cols]
    assert same.mean() >= 0.9  # precision
    possible = sum(
        int((owners == o).sum()) ** 2 - int((np.bincount(frame[owners == o]) ** 2).sum()) for o in set(owners)
    )
    assert same.sum() >= 0.3 * possible  # recall: views of one object from different sides overlap less


def test_no_geometry_matches_each_mask_to_itself_only():
    segments = [np.array([[1, 2]], dtype=np.uint8), None]
    matches = same_object(segments, [2, 0], lambda frame: None)
    assert np.array_equal(matches.toarray(), np.eye(2, dtype=bool))


def stated(frame: int, subject: int, obj: int, predicates: list[int]) -> tuple[int, int, int, list[int]]:
    return frame, subject, obj, predicates


def consensus_of(track: list[int], mask_frame: list[int], relations: list[tuple], min_frames: int = 2):
    width = max(len(r[3]) for r in relations)
    table = np.array([r[3] + [-1] * (width - len(r[3])) for r in relations], dtype=np.int64)
    columns = [np.array([r[i] for r in relations], dtype=np.int64) for i in range(3)]
    return relation_consensus(np.array(track), np.array(mask_frame), *columns, table, min_frames)


def test_consensus_rules():
    # Objects A, B, C (tracks 0, 1, 2) seen in frames 0-3; frame f's masks are 3f (A), 3f + 1 (B), 3f + 2 (C).
    track = [0, 1, 2] * 4
    mask_frame = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    relations = [
        stated(0, 0, 1, [5, 7]),  # A -> B: predicate 5 in frames 0 and 1, 7 once
        stated(1, 3, 4, [5]),
        stated(0, 0, 2, [3]),  # A -> C: frame 0 only
        stated(3, 10, 11, [4]),  # B -> C: frames 3 and 1 (frame 1 says 6)
        stated(1, 4, 5, [6]),
    ]
    consensus = consensus_of(track, mask_frame, relations)
    added = {(int(f), int(s), int(o)): [int(p) for p in ps if p >= 0] for f, s, o, ps in zip(
        consensus.frame, consensus.subject, consensus.object, consensus.predicates)}  # fmt: skip
    # A -> B is taught in frames 2 and 3 with predicates 5 and 7 (each stated in at least a quarter of its two
    # stating frames), from a statement having 5, the most stated.
    assert added[(2, 6, 7)] == [5, 7] and added[(3, 9, 10)] == [5, 7]
    # B -> C is stated in two frames with different predicates: both are taught.
    assert added[(0, 1, 2)] == [4, 6] and added[(2, 7, 8)] == [4, 6]
    assert len(added) == 4
    sources = dict(zip(zip(consensus.subject.tolist(), consensus.object.tolist()), consensus.source.tolist()))
    assert sources[(6, 7)] in (0, 1) and sources[(1, 2)] == 3
    # A -> C was stated once: frames 1-3 teach it nothing; no reverse pair and no statement is touched.
    ignored = set(zip(consensus.ignored_subject.tolist(), consensus.ignored_object.tolist()))
    assert ignored == {(3, 5), (6, 8), (9, 11)}
    # A predicate share of 3/4: only predicates stated in both frames; none is for B -> C, so the most stated (a
    # tie: the smallest id) is taught.
    width = max(len(r[3]) for r in relations)
    table = np.array([r[3] + [-1] * (width - len(r[3])) for r in relations], dtype=np.int64)
    columns = [np.array([r[i] for r in relations], dtype=np.int64) for i in range(3)]
    picky = relation_consensus(np.array(track), np.array(mask_frame), *columns, table, 2, predicate_share=0.75)
    taught = {
        (int(s), int(o)): [int(p) for p in ps if p >= 0]
        for s, o, ps in zip(picky.subject, picky.object, picky.predicates)
    }
    assert taught[(6, 7)] == [5] and taught[(1, 2)] == [4]
    # ignore_rare off: A -> C keeps being taught "none" elsewhere; the added relations do not change.
    strict = relation_consensus(np.array(track), np.array(mask_frame), *columns, table, 2, ignore_rare=False)
    assert len(strict.ignored_subject) == 0 and np.array_equal(strict.subject, consensus.subject)
    # min_frames 1: one statement is enough.
    loose = consensus_of(track, mask_frame, relations, min_frames=1)
    assert {(3, 5), (6, 8), (9, 11)} <= set(zip(loose.subject.tolist(), loose.object.tolist()))
    assert len(loose.ignored_subject) == 0


def test_masks_of_one_track_in_a_frame_are_not_related_to_each_other():
    # A split object: two masks of frame 1 in track 0; the statement about track 0 -> 1 reaches both parts.
    consensus = consensus_of(
        [0, 1, 0, 0, 1], [0, 0, 1, 1, 1], [stated(0, 0, 1, [2]), stated(1, 2, 4, [2]), stated(1, 2, 3, [9])]
    )
    added = set(zip(consensus.subject.tolist(), consensus.object.tolist()))
    assert added == {(3, 4)}  # 2 -> 4 is stated, 2 -> 3 is within one track and stays as stated


def test_store_with_relations_and_ignored_pairs(labels_dir: Path):
    store = LabelStore.open(labels_dir)
    first, count = int(store.mask_offsets[0]), int(store.mask_offsets[1] - store.mask_offsets[0])
    pairs = {(int(s), int(o)) for s, o in zip(store.relation_subject, store.relation_object)}
    free = [(s, o) for s in range(first, first + count) for o in range(first, first + count) if s != o]
    free = [pair for pair in free if pair not in pairs]
    (s1, o1), (s2, o2) = free[:2]
    grown = store.with_relations(
        torch.tensor([0]), torch.tensor([s1]), torch.tensor([o1]), torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]]),
        torch.tensor([0]), ignored=(torch.tensor([s2]), torch.tensor([o2])),
    )  # fmt: skip
    index = int(grown.relation_lookup(torch.tensor(s1), torch.tensor(o1)))
    assert index == store.num_relations and grown.num_relations == store.num_relations + 1
    assert torch.equal(grown.relation_embeddings[index], store.relation_embeddings[0])
    assert grown.relation_predicates.shape[1] == 8 and int(grown.relation_predicates[0, -1]) == -1
    assert int(grown.relation_lookup(torch.tensor(s2), torch.tensor(o2))) == IGNORED_RELATION
    assert int(store.relation_lookup(torch.tensor(s2), torch.tensor(o2))) == -1  # the original is unchanged
    old = torch.tensor(sorted(pairs)[0])
    assert int(grown.relation_lookup(old[0], old[1])) == int(store.relation_lookup(old[0], old[1]))
    with pytest.raises(UserError, match="twice"):
        store.with_relations(
            torch.tensor([0]), old[:1], old[1:], torch.tensor([[0]]), torch.tensor([0])
        )  # fmt: skip


def test_pooling_leaves_clean_labels_alone_and_teaches_realistic_ones(
    synth_capture: Path, labels_dir: Path, tmp_path: Path
):
    clean = LabelStore.open(labels_dir)
    pooled, consensus = pool_relations(clean, capture_geometry(synth_capture, clean.frame_names))
    assert consensus.num_added == 0 and len(consensus.ignored_subject) == 0
    assert pooled.num_relations == clean.num_relations

    typical_dir = label_from_ground_truth(
        synth_capture, labels_dir=tmp_path / "typical", realism="typical", seed=0, progress=False
    )
    store = LabelStore.open(typical_dir)
    pooled, consensus = pool_relations(store, capture_geometry(synth_capture, store.frame_names))
    owners = mask_owners(synth_capture, store)
    truth = read_ground_truth(synth_capture).relations
    true_added = [(int(owners[s]), int(owners[o])) in truth for s, o in zip(consensus.subject, consensus.object)]
    assert consensus.num_added >= 0.2 * store.num_relations  # it did real work
    assert np.mean(true_added) >= 0.85  # and taught mostly true relations
    assert pooled.num_relations == store.num_relations + consensus.num_added
    assert len(np.unique(tracks(same_object(
        [s.numpy() for s in store.segments], (store.mask_offsets[1:] - store.mask_offsets[:-1]).tolist(),
        capture_geometry(synth_capture, store.frame_names),
    )))) < store.num_masks / 2  # fmt: skip


def test_data_manager_pools_relations_when_asked(synth_capture: Path, tmp_path: Path):
    """Through the nerfstudio glue: the dataset's own depth and cameras give the same pooling as the capture's
    files, and ignored pairs are left out of the relation loss."""
    from conftest import lite_config

    labels = label_from_ground_truth(synth_capture, labels_dir=tmp_path / "labels", realism="typical", progress=False)
    config = lite_config(synth_capture, labels, tmp_path, 1)
    config.pipeline.datamanager.relation_consensus = True
    datamanager = config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    store = LabelStore.open(labels)
    _, expected = pool_relations(store, capture_geometry(synth_capture, store.frame_names))
    # nerfstudio's dataparser turns and rescales the world and keeps some frames for evaluation: the voxels are
    # laid out differently and fewer frames take part, so the pooling is close to the capture files', not equal.
    pooled = datamanager.consensus
    assert datamanager.labels.num_relations == store.num_relations + pooled.num_added
    assert 0.6 * expected.num_added <= pooled.num_added <= 1.4 * expected.num_added
    ignored = (torch.from_numpy(pooled.ignored_subject), torch.from_numpy(pooled.ignored_object))
    assert (datamanager.labels.relation_lookup(*ignored) == IGNORED_RELATION).all()
    batch = {
        "mask_id": torch.cat([ignored[0][:4], ignored[1][:4]]),
        "partner": torch.cat([torch.arange(4, 8), torch.arange(0, 4)]),
    }
    batch["relation_id"] = datamanager.labels.relation_lookup(batch["mask_id"], batch["mask_id"][batch["partner"]])
    targets = datamanager.add_targets(batch)
    assert not targets["relation_valid"][:4].any()  # subject -> object pairs stated once: no "none" taught

    config.pipeline.datamanager.relation_consensus = False
    plain = config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    assert plain.labels.num_relations == store.num_relations
