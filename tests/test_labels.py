"""Tests of the label store (writer, reader, staleness) and of label-gt on a hand-made capture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relationfield.errors import StaleLabelsError, UserError
from relationfield.labels import (
    LabelStore,
    LabelWriter,
    frame_hash,
    label_from_ground_truth,
    segments_from_masks,
)
from relationfield.labels.format import FRAMES_DIR, MANIFEST_FILE
from relationfield.sampler import PairSampler

D_SEM = 8
D_REL = 6


# --------------------------------------------------------------------------- helpers


def write_image(path: Path, height: int, width: int, value: int = 0) -> None:
    """A small RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    rows = rng.normal(size=(n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def make_writer(labels_dir: Path, **kwargs: object) -> LabelWriter:
    return LabelWriter(
        labels_dir,
        semantic_encoder="test-sem",
        semantic_dim=D_SEM,
        relation_encoder="test-rel",
        relation_dim=D_REL,
        producer="test",
        options={"path": Path("/x"), "n": np.int64(3)},
        **kwargs,
    )


PREDICATES = ["on", "near", "left of"]


def build_store(tmp_path: Path) -> dict[str, object]:
    """A capture with three images; two are labelled (one of them with > 255 masks)."""
    data = tmp_path / "capture"
    names = ["images/a.png", "images/b.png", "images/c.png"]
    write_image(data / names[0], 6, 8, 10)
    write_image(data / names[1], 20, 20, 20)
    write_image(data / names[2], 5, 7, 30)
    rng = np.random.default_rng(0)
    writer = make_writer(data / "relationfield")
    pred_emb = unit_rows(rng, len(PREDICATES), D_REL)
    none_emb = unit_rows(rng, 1, D_REL)[0]
    writer.set_predicates(PREDICATES, torch.from_numpy(pred_emb), none_emb)

    seg_a = np.zeros((6, 8), dtype=np.int64)
    seg_a[0:2, 0:3] = 1  # mask 1: rows 0-1, cols 0-2
    seg_a[3:6, 5:8] = 2  # mask 2: rows 3-5, cols 5-7
    seg_a[5, 0] = 3  # mask 3: one pixel
    emb_a = unit_rows(rng, 3, D_SEM)
    rel_a = [(1, 2, ["on", "near"]), (2, 3, "left of"), (3, 1, ["near"])]
    writer.write_frame(names[0], seg_a, emb_a, rel_a, mask_labels=["cup", "table", "lamp"])

    seg_b = np.arange(400).reshape(20, 20) % 300 + 1  # 300 masks -> uint16 on disk
    emb_b = unit_rows(rng, 300, D_SEM)
    rel_b = [(1, 2, ["on"]), (300, 299, ["near", "on", "near"])]
    writer.write_frame(names[1], seg_b, emb_b, rel_b)

    labels_dir = writer.finalize(data, names[:2])
    return {
        "data": data,
        "labels_dir": labels_dir,
        "names": names,
        "seg_a": seg_a,
        "seg_b": seg_b,
        "emb_a": emb_a,
        "emb_b": emb_b,
        "pred_emb": pred_emb,
        "none_emb": none_emb,
    }


# --------------------------------------------------------------------------- writer / reader


def test_round_trip(tmp_path: Path) -> None:
    built = build_store(tmp_path)
    labels_dir: Path = built["labels_dir"]  # type: ignore[assignment]
    data: Path = built["data"]  # type: ignore[assignment]
    assert labels_dir == data / "relationfield"
    assert sorted(p.name for p in (labels_dir / FRAMES_DIR).iterdir()) == ["a.npz", "b.npz"]

    with np.load(labels_dir / FRAMES_DIR / "a.npz") as raw_a, np.load(labels_dir / FRAMES_DIR / "b.npz") as raw_b:
        assert raw_a["segments"].dtype == np.uint8
        assert raw_b["segments"].dtype == np.uint16
        assert raw_a["mask_embeddings"].dtype == np.float16
        assert raw_a["relations"].dtype == np.int16
        assert raw_a["relation_predicates"].dtype == np.int16

    store = LabelStore.open(labels_dir, data_dir=data)
    assert store.num_frames == 2 and store.frame_names == ["images/a.png", "images/b.png"]
    assert store.labelled.tolist() == [True, True]
    assert store.semantic_encoder == "test-sem" and store.semantic_dim == D_SEM
    assert store.relation_encoder == "test-rel" and store.relation_dim == D_REL
    assert store.manifest["producer"]["tool"] == "test"
    assert store.manifest["producer"]["options"] == {"path": "/x", "n": 3}

    # segments keep a compact dtype; values round-trip
    assert store.segments[0].dtype == torch.uint8
    assert store.segments[1].dtype == torch.int16
    assert np.array_equal(store.segments[0].numpy(), built["seg_a"])
    assert np.array_equal(store.segments[1].numpy(), built["seg_b"])

    # masks: offsets, embeddings (float16), labels, boxes, areas
    assert store.mask_offsets.tolist() == [0, 3, 303]
    assert store.mask_embeddings.dtype == torch.float16 and store.mask_embeddings.shape == (303, D_SEM)
    expected = np.concatenate([built["emb_a"], built["emb_b"]]).astype(np.float16)
    assert np.array_equal(store.mask_embeddings.numpy(), expected)
    assert store.mask_labels[:3] == ["cup", "table", "lamp"] and store.mask_labels[3:] == [""] * 300
    assert store.mask_boxes.dtype == torch.int16 and store.mask_areas.dtype == torch.int32
    assert store.mask_boxes[:3].tolist() == [[0, 0, 1, 2], [3, 5, 5, 7], [5, 0, 5, 0]]
    assert store.mask_areas[:3].tolist() == [6, 9, 1]
    assert int(store.mask_areas.sum()) == 16 + 400
    assert store.mask_frame.tolist() == [0] * 3 + [1] * 300

    # relations: global ids, predicate padding, embeddings = normalised mean of predicates
    assert store.relation_frame.tolist() == [0, 0, 0, 1, 1]
    assert store.relation_subject.tolist() == [0, 1, 2, 3, 302]
    assert store.relation_object.tolist() == [1, 2, 0, 4, 301]
    assert store.predicates == sorted(PREDICATES)  # ["left of", "near", "on"]
    left, near, on = 0, 1, 2
    assert store.relation_predicates.dtype == torch.long
    assert store.relation_predicates.tolist() == [
        [on, near],
        [left, -1],
        [near, -1],
        [on, -1],
        [near, on],
    ]
    table = {text: built["pred_emb"][PREDICATES.index(text)] for text in PREDICATES}  # type: ignore[index]
    mean = table["on"] + table["near"]
    mean /= np.linalg.norm(mean)
    assert store.relation_embeddings.dtype == torch.float16
    assert np.allclose(store.relation_embeddings[0].float().numpy(), mean, atol=2e-3)
    assert np.allclose(store.relation_embeddings[1].float().numpy(), table["left of"], atol=2e-3)
    assert np.allclose(store.relation_embeddings[4].float().numpy(), mean, atol=2e-3)
    assert np.allclose(
        store.predicate_embeddings[store.predicates.index("near")].float().numpy(), table["near"], atol=2e-3
    )
    assert np.allclose(store.none_embedding.float().numpy(), built["none_emb"], atol=2e-3)

    assert store.nbytes() >= 6 * 8 + 400 * 2 + 303 * D_SEM * 2


def test_relation_lookup(tmp_path: Path) -> None:
    built = build_store(tmp_path)
    store = LabelStore.open(built["labels_dir"])  # type: ignore[arg-type]
    subjects = torch.tensor([0, 1, 2, 3, 302, 1, 0, 0, 3, -1, 0, 303])
    objects = torch.tensor([1, 2, 0, 4, 301, 0, 2, 3, 0, 1, -1, 0])
    # 0->3 and 3->0 pair masks of different frames; 1->0, 0->2 are unlabelled (reversed) pairs
    assert store.relation_lookup(subjects, objects).tolist() == [0, 1, 2, 3, 4, -1, -1, -1, -1, -1, -1, -1]
    grid = store.relation_lookup(torch.tensor([[0], [1]]), torch.tensor([[1, 2]]))
    assert grid.tolist() == [[0, -1], [-1, 1]]
    ys, xs = torch.tensor([0, 4, 2]), torch.tensor([0, 6, 4])
    # the pixel -> global mask lookup the sampler trains with (the store itself keeps no second copy of it)
    assert PairSampler(store).mask_ids(torch.zeros_like(ys), ys, xs).tolist() == [0, 1, -1]


def test_relation_lookup_without_relations(tmp_path: Path) -> None:
    data = tmp_path / "capture"
    write_image(data / "a.png", 4, 4)
    writer = make_writer(data / "relationfield")
    writer.set_predicates([], np.zeros((0, D_REL)), np.ones(D_REL))
    writer.write_frame("a.png", np.ones((4, 4), dtype=np.uint8), np.ones((1, D_SEM)), [])
    store = LabelStore.open(writer.finalize(data, ["a.png"]))
    assert store.relation_predicates.shape == (0, 1)
    assert store.relation_lookup(torch.tensor([0]), torch.tensor([0])).tolist() == [-1]
    assert store.predicates == [] and store.predicate_embeddings.shape == (0, D_REL)


def test_segments_from_masks_smaller_wins_and_empty_dropped() -> None:
    masks = np.zeros((5, 6, 6), dtype=bool)
    masks[0] = True  # background-sized mask
    masks[1, 1:3, 1:3] = True  # small, on top of mask 0
    masks[2, 1:3, 1:3] = True  # same pixels as mask 1 and same area: painted later, wins
    masks[3, 4:6, 4:6] = True  # small
    masks[3, 4, 4] = True
    # mask 4 stays empty
    segments, kept = segments_from_masks(masks)
    assert kept.tolist() == [0, 2, 3]  # mask 1 fully covered, mask 4 empty: dropped, ids compacted
    assert segments.dtype == np.uint8
    assert segments[0, 0] == 1 and segments[1, 1] == 2 and segments[5, 5] == 3
    assert set(np.unique(segments).tolist()) == {1, 2, 3}

    inner = np.zeros((2, 5, 5), dtype=bool)
    inner[1] = True  # the large mask comes second; the small one must still win
    inner[0, 2, 2] = True
    segments, kept = segments_from_masks(inner)
    assert kept.tolist() == [0, 1]
    assert segments[2, 2] == 1 and segments[0, 0] == 2

    empty, kept = segments_from_masks(np.zeros((0, 3, 4), dtype=bool))
    assert empty.shape == (3, 4) and not empty.any() and kept.size == 0

    many = np.zeros((300, 20, 20), dtype=bool)
    many.reshape(300, -1)[np.arange(300), np.arange(300)] = True
    segments, kept = segments_from_masks(many)
    assert segments.dtype == np.uint16 and len(kept) == 300


def test_segments_from_masks_leave_a_disputed_boundary_unlabelled() -> None:
    # Two books, one on the other; the lower one's mask bled a pixel up into the upper one's (10 x 4 px).
    masks = np.zeros((3, 8, 12), dtype=bool)
    masks[0, 1:5, 1:11] = True  # upper book
    masks[1, 5:7, 1:11] = True  # lower book, 2 px thick...
    masks[1, 4, 1:11] = True  # ...bled one row into the upper book (a third of its mask: not nested there)
    masks[2, 2:4, 4:7] = True  # a label on the upper book's cover: all inside it, nested
    segments, kept = segments_from_masks(masks)
    assert kept.tolist() == [0, 1, 2]
    assert not segments[4, 1:11].any()  # the row both books claim goes to neither
    assert (segments[5:7, 1:11] == 2).all() and (segments[1:4, 1:4] == 1).all()
    assert (segments[2:4, 4:7] == 3).all()  # a nested mask still wins its pixels

    # A mask half inside a larger one (not nested at 0.8) keeps the shared pixels deep inside it and loses
    # only those within the band of the larger one's edge; nested at 0.5, or with no band, it keeps all.
    half = np.zeros((2, 6, 14), dtype=bool)
    half[0, :, 0:10] = True  # the large mask; its right edge is column 9
    half[1, 1:5, 5:13] = True  # 32 px, 20 of them inside the large mask (columns 5-9)
    segments, _ = segments_from_masks(half)
    assert (segments[1:5, 5:8] == 2).all() and not segments[1:5, 8:10].any() and (segments[1:5, 10:13] == 2).all()
    assert (segments[0, 0:10] == 1).all() and (segments[1:5, 0:5] == 1).all()
    for options in ({"nested_share": 0.5}, {"boundary_band": 0}):
        segments, _ = segments_from_masks(half, **options)
        assert (segments[1:5, 5:13] == 2).all(), options


# --------------------------------------------------------------------------- staleness and errors


def test_stale_image_detected(tmp_path: Path) -> None:
    built = build_store(tmp_path)
    data: Path = built["data"]  # type: ignore[assignment]
    labels_dir: Path = built["labels_dir"]  # type: ignore[assignment]
    LabelStore.open(labels_dir, data_dir=data)  # fresh: fine
    write_image(data / "images/b.png", 20, 20, 99)  # new bytes
    with pytest.raises(StaleLabelsError, match=r"images/b\.png") as info:
        LabelStore.open(labels_dir, data_dir=data)
    assert "label-gt" in str(info.value)
    LabelStore.open(labels_dir)  # without a capture to compare with, no check
    (data / "images/a.png").unlink()
    with pytest.raises(StaleLabelsError, match=r"images/a\.png"):
        LabelStore.open(labels_dir, data_dir=data)


def test_frame_hash_is_order_independent_and_content_based(tmp_path: Path) -> None:
    write_image(tmp_path / "x.png", 3, 3, 1)
    write_image(tmp_path / "y.png", 3, 3, 2)
    first = frame_hash(tmp_path, ["x.png", "y.png"])
    assert first == frame_hash(tmp_path, ["y.png", "x.png"])
    assert len(first) == 64
    write_image(tmp_path / "y.png", 3, 3, 3)
    assert frame_hash(tmp_path, ["x.png", "y.png"]) != first
    with pytest.raises(UserError, match="z.png"):
        frame_hash(tmp_path, ["z.png"])


def test_missing_store_pieces_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        LabelStore.open(tmp_path / "nowhere")
    built = build_store(tmp_path)
    labels_dir: Path = built["labels_dir"]  # type: ignore[assignment]
    manifest_path = labels_dir / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text())

    manifest_path.write_text(json.dumps({**manifest, "version": 99}))
    with pytest.raises(UserError, match="version 99"):
        LabelStore.open(labels_dir)
    manifest_path.write_text("{not json")
    with pytest.raises(UserError, match=str(manifest_path)):
        LabelStore.open(labels_dir)
    manifest_path.write_text(json.dumps(manifest))
    (labels_dir / FRAMES_DIR / "b.npz").unlink()
    with pytest.raises(UserError, match="b.npz"):
        LabelStore.open(labels_dir)
    manifest_path.unlink()
    with pytest.raises(UserError, match="manifest.json") as info:
        LabelStore.open(labels_dir)
    assert not isinstance(info.value, StaleLabelsError)


def test_interrupted_rewrite_leaves_no_manifest(tmp_path: Path) -> None:
    built = build_store(tmp_path)
    labels_dir: Path = built["labels_dir"]  # type: ignore[assignment]
    data: Path = built["data"]  # type: ignore[assignment]
    writer = make_writer(labels_dir)  # a new run starts ...
    assert not (labels_dir / MANIFEST_FILE).exists()
    writer.set_predicates(["on"], np.ones((1, D_REL)), np.ones(D_REL))
    writer.write_frame("images/c.png", np.zeros((5, 7), dtype=np.uint8), np.zeros((0, D_SEM)), [])
    with pytest.raises(UserError, match="manifest.json"):  # ... and dies before finalize
        LabelStore.open(labels_dir)
    with pytest.raises(ValueError, match="never written"):
        writer.finalize(data, ["images/a.png", "images/c.png"])
    writer.finalize(data, ["images/c.png"])
    store = LabelStore.open(labels_dir, data_dir=data)
    assert store.frame_names == ["images/c.png"] and store.num_masks == 0
    assert [p.name for p in (labels_dir / FRAMES_DIR).iterdir()] == ["c.npz"]  # old frames removed
    assert not [p for p in labels_dir.rglob("*.tmp")]


def test_writer_validates_input(tmp_path: Path) -> None:
    writer = make_writer(tmp_path / "labels")
    seg = np.array([[0, 1], [2, 2]])
    emb = np.ones((2, D_SEM))
    with pytest.raises(ValueError, match="set_predicates"):
        writer.write_frame("a.png", seg, emb, [(1, 2, ["on"])])
    writer.set_predicates(["on"], np.ones((1, D_REL)), np.ones(D_REL))
    with pytest.raises(ValueError, match="not in the predicate table"):
        writer.write_frame("a.png", seg, emb, [(1, 2, ["under"])])
    with pytest.raises(ValueError, match="outside"):
        writer.write_frame("a.png", seg, emb, [(1, 3, ["on"])])
    with pytest.raises(ValueError, match="twice"):
        writer.write_frame("a.png", seg, emb, [(1, 2, ["on"]), (1, 2, ["on"])])
    with pytest.raises(ValueError, match="ids outside"):
        writer.write_frame("a.png", seg, np.ones((1, D_SEM)), [])
    with pytest.raises(ValueError, match="shape"):
        writer.write_frame("a.png", seg, np.ones((2, D_SEM + 1)), [])
    writer.write_frame("dir1/a.png", seg, emb, [])
    with pytest.raises(ValueError, match="same file stem"):
        writer.write_frame("dir2/a.png", seg, emb, [])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / MANIFEST_FILE).write_text('{"something": "else"}')
    with pytest.raises(UserError, match="refusing"):
        make_writer(tmp_path / "other")


# --------------------------------------------------------------------------- dataset frame selection


def test_frames_without_labels(tmp_path: Path) -> None:
    built = build_store(tmp_path)
    data: Path = built["data"]  # type: ignore[assignment]
    labels_dir: Path = built["labels_dir"]  # type: ignore[assignment]
    dataset = ["images/c.png", str(data / "images/b.png"), "./images/a.png"]
    store = LabelStore.open(labels_dir, data_dir=data, frame_names=dataset)
    assert store.frame_names == ["images/c.png", "images/b.png", "images/a.png"]
    assert store.labelled.tolist() == [False, True, True]
    assert store.segments[0].shape == (5, 7) and not store.segments[0].any()  # size of its image
    assert store.segments[0].dtype == torch.uint8
    assert store.mask_offsets.tolist() == [0, 0, 300, 303]
    assert store.relation_frame.tolist() == [1, 1, 2, 2, 2]
    assert store.relation_subject.tolist() == [0, 299, 300, 301, 302]
    assert store.mask_labels[300:] == ["cup", "table", "lamp"]
    # frame a's (cup -> table) relation is relation 2 in this order
    assert store.relation_lookup(torch.tensor([300]), torch.tensor([301])).tolist() == [2]

    without_capture = LabelStore.open(labels_dir, frame_names=["images/c.png", "images/a.png"])
    assert without_capture.segments[0].shape == (6, 8)  # image size unknown: the labelled frames' size

    with pytest.raises(StaleLabelsError, match="None of the dataset"):
        LabelStore.open(labels_dir, frame_names=["other/x.png"])


# --------------------------------------------------------------------------- label-gt


OBJECTS = {1: "chair", 2: "table", 3: "lamp", 4: "sofa"}
RELATIONSHIPS = [[1, 2, "left of"], [1, 2, "near"], [3, 2, "standing on"], [2, 1, "right of"], [4, 1, "near"]]


def make_synthetic_capture(root: Path, with_ground_truth: bool = True) -> Path:
    """Three 10x12 frames. Frame 0 shows chair, table, lamp; frame 1 chair and table; frame 2 lamp,
    table and a 2-pixel sliver of the chair (below the visibility threshold). The sofa is never seen."""
    height, width = 10, 12
    frames = []
    instances = []
    for index in range(3):
        name = f"images/frame_{index:05d}.png"
        write_image(root / name, height, width, index)
        frames.append({"file_path": name, "transform_matrix": np.eye(4).tolist()})
        instances.append(np.zeros((height, width), dtype=np.uint16))
    instances[0][0:4, 0:4] = 1
    instances[0][5:10, 0:12] = 2
    instances[0][0:3, 8:11] = 3
    instances[1][0:6, 0:5] = 1
    instances[1][6:10, :] = 2
    instances[2][0:5, 5:9] = 3
    instances[2][5:10, :] = 2
    instances[2][0, 0:2] = 1
    instances[2][0, 11] = 77  # an id the scene graph does not know: unlabelled
    (root / "transforms.json").write_text(json.dumps({"camera_model": "OPENCV", "frames": frames}))
    if with_ground_truth:
        gt = root / "ground_truth"
        (gt / "instances").mkdir(parents=True)
        objects = [
            {"id": i, "label": label, "aabb": {"min": [0, 0, 0], "max": [1, 1, 1]}} for i, label in OBJECTS.items()
        ]
        (gt / "scene_graph.json").write_text(json.dumps({"objects": objects, "relationships": RELATIONSHIPS}))
        for index, instance in enumerate(instances):
            Image.fromarray(instance).save(gt / "instances" / f"frame_{index:05d}.png")
    return root


def frame_relations(store: LabelStore) -> list[tuple[int, str, str, tuple[str, ...]]]:
    """(frame, subject label, object label, predicates) of every relation of a store."""
    result = []
    for r in range(store.num_relations):
        predicates = tuple(store.predicates[p] for p in store.relation_predicates[r].tolist() if p >= 0)
        result.append(
            (
                int(store.relation_frame[r]),
                store.mask_labels[int(store.relation_subject[r])],
                store.mask_labels[int(store.relation_object[r])],
                predicates,
            )
        )
    return result


def test_label_from_ground_truth(tmp_path: Path) -> None:
    from relationfield.encoders import OFFLINE_TEXT_ENCODER, load_text_encoder

    data = make_synthetic_capture(tmp_path / "capture")
    labels_dir = label_from_ground_truth(data, progress=False)
    assert labels_dir == data / "relationfield"
    store = LabelStore.open(labels_dir, data_dir=data)
    encoder = load_text_encoder()
    assert store.semantic_encoder == store.relation_encoder == OFFLINE_TEXT_ENCODER
    assert store.semantic_dim == store.relation_dim == 384
    producer = store.manifest["producer"]
    assert producer["tool"] == "label-gt"
    assert producer["options"]["relation_noise"] == 0.0 and producer["options"]["seed"] == 0
    assert store.manifest["frames"]["names"] == [f"images/frame_{i:05d}.png" for i in range(3)]

    assert store.mask_offsets.tolist() == [0, 3, 5, 7]
    assert store.mask_labels == ["chair", "table", "lamp", "chair", "table", "table", "lamp"]
    # segments follow the instance maps (local ids in object-id order; unknown ids unlabelled)
    assert store.segments[2][0, 0].item() == 0 and store.segments[2][0, 11].item() == 0
    assert store.segments[2][0, 6].item() == 2 and store.segments[2][9, 0].item() == 1
    expected = encoder.encode(store.mask_labels)
    assert torch.allclose(store.mask_embeddings.float(), expected, atol=2e-3)

    assert sorted(frame_relations(store)) == sorted(
        [
            (0, "chair", "table", ("left of", "near")),
            (0, "table", "chair", ("right of",)),
            (0, "lamp", "table", ("standing on",)),
            (1, "chair", "table", ("left of", "near")),
            (1, "table", "chair", ("right of",)),
            (2, "lamp", "table", ("standing on",)),
        ]
    )
    assert store.predicates == ["left of", "near", "right of", "standing on"]  # the sofa's "near" too
    both = encoder.encode(["left of", "near"]).mean(dim=0)
    index = frame_relations(store).index((0, "chair", "table", ("left of", "near")))
    assert torch.allclose(store.relation_embeddings[index].float(), both / both.norm(), atol=2e-3)
    assert torch.allclose(store.none_embedding.float(), encoder.encode(["none"])[0], atol=2e-3)


def test_label_from_ground_truth_noise(tmp_path: Path) -> None:
    data = make_synthetic_capture(tmp_path / "capture")
    clean = frame_relations(LabelStore.open(label_from_ground_truth(data, progress=False)))
    true_predicates = {(s, o): p for _, s, o, p in clean}

    def noisy(**kwargs: float) -> list[tuple[int, str, str, tuple[str, ...]]]:
        labels_dir = label_from_ground_truth(data, labels_dir=tmp_path / "noisy", progress=False, **kwargs)
        return frame_relations(LabelStore.open(labels_dir, data_dir=data))

    wrong = noisy(relation_noise=1.0, seed=3)
    assert len(wrong) == len(clean)
    for _, subject, obj, predicates in wrong:
        assert len(predicates) == 1 and predicates[0] not in true_predicates[(subject, obj)]
    assert noisy(relation_noise=1.0, seed=3) == wrong  # same seed, same labels

    half = [noisy(relation_noise=0.5, drop_rate=0.3, seed=seed) for seed in range(6)]
    assert half[2] == noisy(relation_noise=0.5, drop_rate=0.3, seed=2)
    assert any(labels != clean for labels in half)
    assert len({tuple(labels) for labels in half}) > 1  # the seed matters

    assert noisy(drop_rate=1.0) == []
    store = LabelStore.open(tmp_path / "noisy")
    assert store.num_masks == 7 and store.predicates == ["left of", "near", "right of", "standing on"]
    assert store.manifest["producer"]["options"]["drop_rate"] == 1.0


def test_label_from_ground_truth_needs_synthetic_capture(tmp_path: Path) -> None:
    data = make_synthetic_capture(tmp_path / "real", with_ground_truth=False)
    with pytest.raises(UserError, match="synth") as info:
        label_from_ground_truth(data, progress=False)
    assert "preprocessing" in str(info.value)
    with pytest.raises(UserError, match="transforms.json"):
        label_from_ground_truth(tmp_path / "empty", progress=False)
    with pytest.raises(UserError, match="drop_rate"):
        label_from_ground_truth(data, drop_rate=1.5, progress=False)


def test_label_from_synth_capture(synth_capture: Path, tmp_path: Path) -> None:
    """label-gt on a capture of ``relationfield synth`` (the contract between the two)."""
    labels_dir = label_from_ground_truth(synth_capture, labels_dir=tmp_path / "labels", progress=False)
    store = LabelStore.open(labels_dir, data_dir=synth_capture)
    graph = json.loads((synth_capture / "ground_truth" / "scene_graph.json").read_text())
    transforms = json.loads((synth_capture / "transforms.json").read_text())
    assert store.frame_names == [frame["file_path"] for frame in transforms["frames"]]
    assert bool(store.labelled.all()) and store.num_masks > 0 and store.num_relations > 0
    assert store.predicates == sorted({p for _, _, p in graph["relationships"]})
    assert set(store.mask_labels) <= {obj["label"] for obj in graph["objects"]}
    mask_frame = store.mask_frame
    assert torch.equal(mask_frame[store.relation_subject], store.relation_frame)
    assert torch.equal(mask_frame[store.relation_object], store.relation_frame)
    found = store.relation_lookup(store.relation_subject, store.relation_object)
    assert torch.equal(found, torch.arange(store.num_relations))
