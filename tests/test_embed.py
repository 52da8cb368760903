"""Tests of the ``embed`` stage and the open_clip encoders (offline: random-weight tiny CLIP, MiniLM)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from workspace_fixtures import GroundTruthWorkspace, write_workspace_from_ground_truth

from relationfield.encoders import (
    CLIP_RANDOM_INIT,
    DEFAULT_CLIP_ENCODER,
    OFFLINE_TEXT_ENCODER,
    TINY_CLIP_MODEL,
    ClipImageEncoder,
    ClipTextEncoder,
    clip_encoder_name,
    load_image_encoder,
    load_text_encoder,
    parse_clip_encoder_name,
)
from relationfield.errors import UserError
from relationfield.labels.format import MANIFEST_FILE, frame_file_name, mask_boxes
from relationfield.labels.store import LabelStore
from relationfield.preprocess.clip_cache import embeddings_path
from relationfield.preprocess.crops import CROP_GREY, embed_masks, mask_crops
from relationfield.preprocess.embed import EmbedConfig, run_embed, summary_text
from relationfield.preprocess.workspace import (
    masks_path,
    parse_relations,
    read_json,
    relations_path,
    write_json_atomic,
)

TINY_CLIP = f"open_clip:{TINY_CLIP_MODEL}/{CLIP_RANDOM_INIT}"
FAILED_FRAME, UNASKED_FRAME = 1, 2


def embed_config(capture: Path, **overrides) -> EmbedConfig:
    """The offline configuration: tiny random CLIP, MiniLM text, CPU."""
    options = dict(
        data=capture,
        text_encoder=OFFLINE_TEXT_ENCODER,
        clip_model=TINY_CLIP_MODEL,
        clip_pretrained=CLIP_RANDOM_INIT,
        device="cpu",
    )
    options.update(overrides)
    return EmbedConfig(**options)


def frame_arrays(labels_dir: Path, name: str) -> dict[str, np.ndarray]:
    """The arrays of a written frame file."""
    with np.load(labels_dir / "frames" / frame_file_name(name), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    """A 4-frame 64x48 synthetic capture with a ground-truth workspace (frame 1 failed, frame 2 unasked)."""
    from relationfield.synth import generate_capture

    capture = tmp_path_factory.mktemp("embed") / "capture"
    generate_capture(capture, seed=0, num_frames=4, resolution=(64, 48), progress=False)
    write_workspace_from_ground_truth(capture, failed=[FAILED_FRAME], unasked=[UNASKED_FRAME])
    return capture


@pytest.fixture()
def capture(pristine, tmp_path) -> Path:
    """A private copy of the capture (tests may change it)."""
    return Path(shutil.copytree(pristine, tmp_path / "capture"))


@pytest.fixture(scope="module")
def truth(pristine) -> GroundTruthWorkspace:
    """What the workspace holds (rewritten identically into a scratch workspace)."""
    return write_workspace_from_ground_truth(
        pristine, pristine / "scratch_ws", failed=[FAILED_FRAME], unasked=[UNASKED_FRAME]
    )


@pytest.fixture(scope="module")
def clip_store(pristine, tmp_path_factory):
    """``(capture, summary)`` of one CLIP embed run on a copy of the capture."""
    capture = Path(shutil.copytree(pristine, tmp_path_factory.mktemp("clip_run") / "capture"))
    return capture, run_embed(embed_config(capture), progress=False)


# ------------------------------------------------------------------------------------ encoders


def test_clip_encoder_names(tmp_path: Path) -> None:
    assert clip_encoder_name("ViT-B-16", "laion2b_s34b_b88k") == DEFAULT_CLIP_ENCODER
    assert parse_clip_encoder_name(DEFAULT_CLIP_ENCODER) == ("ViT-B-16", "laion2b_s34b_b88k")
    assert clip_encoder_name(TINY_CLIP_MODEL, "None") == TINY_CLIP
    checkpoint = tmp_path / "weights.pt"
    name = clip_encoder_name("ViT-B-32", str(checkpoint))
    assert name == f"open_clip:ViT-B-32/{checkpoint.resolve()}"
    assert parse_clip_encoder_name(name) == ("ViT-B-32", str(checkpoint.resolve()))
    for model, pretrained in (("", "none"), ("a/b", "none"), ("ViT-B-16", " ")):
        with pytest.raises(UserError):
            clip_encoder_name(model, pretrained)
    for bad in ("open_clip:ViT-B-16", "open_clip:/none", "all-MiniLM-L6-v2"):
        with pytest.raises(UserError):
            parse_clip_encoder_name(bad)


def test_tiny_clip_text_and_image_towers() -> None:
    text = load_text_encoder(TINY_CLIP)
    image = load_image_encoder(TINY_CLIP)
    assert isinstance(text, ClipTextEncoder) and isinstance(image, ClipImageEncoder)
    assert text.name == image.name == TINY_CLIP and text.dim == image.dim == 64
    assert text.clip is image.clip  # one model serves both towers
    assert load_image_encoder(TINY_CLIP, "cpu") is image and load_text_encoder(TINY_CLIP, "cpu") is text

    embeddings = text.encode(["chair", "standing on", "chair"])
    assert embeddings.shape == (3, 64) and embeddings.dtype == torch.float32
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.equal(embeddings[0], embeddings[2]) and not torch.allclose(embeddings[0], embeddings[1])
    assert text.encode([]).shape == (0, 64)
    with pytest.raises(TypeError):
        text.encode("chair")  # type: ignore[arg-type]

    from PIL import Image

    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(24)]
    started = time.perf_counter()
    features = image.encode_images(crops)
    assert time.perf_counter() - started < 5.0
    assert features.shape == (24, 64) and features.dtype == torch.float32
    assert torch.allclose(features.norm(dim=1), torch.ones(24), atol=1e-5)
    as_pil = image.encode_images([Image.fromarray(crops[0]), Image.fromarray(crops[0]).convert("L")])
    assert torch.allclose(as_pil[0], features[0], atol=1e-6)
    assert image.encode_images([]).shape == (0, 64)
    with pytest.raises(ValueError):
        image.encode_images([np.zeros((8, 8), dtype=np.float32)])


def test_random_clip_weights_are_reproducible_and_checkpoints_load(tmp_path: Path) -> None:
    from relationfield.encoders import clear_text_encoder_cache

    image = load_image_encoder(TINY_CLIP)
    crop = np.full((64, 64, 3), 200, dtype=np.uint8)
    before = image.encode_images([crop])
    checkpoint = tmp_path / "tiny.pt"
    torch.save(image.clip.model.state_dict(), checkpoint)
    clear_text_encoder_cache()
    assert torch.equal(load_image_encoder(TINY_CLIP).encode_images([crop]), before)  # same seed, same weights
    from_file = load_image_encoder(clip_encoder_name(TINY_CLIP_MODEL, str(checkpoint)))
    assert torch.allclose(from_file.encode_images([crop]), before, atol=1e-6)


def test_clip_load_errors(tmp_path: Path) -> None:
    import huggingface_hub.constants as hub_constants

    with pytest.raises(UserError, match="not an image encoder"):
        load_image_encoder(OFFLINE_TEXT_ENCODER)
    with pytest.raises(UserError, match="Unknown open_clip architecture"):
        load_text_encoder("open_clip:NoSuchNet/none")
    with pytest.raises(UserError, match="no pretrained weights"):
        load_image_encoder("open_clip:ViT-B-16/no_such_tag")
    with pytest.raises(UserError, match="does not exist"):
        load_image_encoder(f"open_clip:ViT-B-16/{tmp_path / 'missing.pt'}")
    with pytest.raises(UserError, match="no pretrained weights"):
        load_image_encoder(f"open_clip:{TINY_CLIP_MODEL}/laion2b_s34b_b88k")
    if (Path(hub_constants.HF_HUB_CACHE) / "models--laion--CLIP-ViT-B-16-laion2B-s34B-b88K").exists():
        pytest.skip("the default CLIP weights are cached here; the offline failure cannot be provoked")
    with pytest.raises(UserError, match="HF_HOME"):
        load_text_encoder(DEFAULT_CLIP_ENCODER)


# --------------------------------------------------------------------------------------- crops


def test_mask_crops_blank_the_background_and_pad_to_square() -> None:
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[..., 2] = 255  # blue everywhere
    segments = np.zeros((40, 60), dtype=np.uint8)
    segments[10:20, 20:40] = 1  # a 10 x 20 box
    image[10:20, 20:40] = (255, 0, 0)
    segments[0:5, 0:5] = 2  # in the corner: its larger crops reach beyond the image
    boxes = mask_boxes(segments, 3)
    assert boxes.tolist() == [[10, 20, 19, 39], [0, 0, 4, 4], [-1, -1, -1, -1]]

    crops = mask_crops(image, segments, [1, 2, 3], size=32, scales=(1.0, 2.0), margin=0.1)
    assert len(crops) == 6 and all(c.shape == (32, 32, 3) and c.dtype == np.uint8 for c in crops)
    near, far = crops[0], crops[1]
    assert tuple(near[16, 16]) == (255, 0, 0) and tuple(near[1, 1]) == CROP_GREY  # grey, not blue
    assert not np.any(np.all(near == (0, 0, 255), axis=-1))
    red_near = np.all(near == (255, 0, 0), axis=-1).sum()
    red_far = np.all(far == (255, 0, 0), axis=-1).sum()
    assert red_far < red_near / 2  # at scale 2 the object covers about a quarter of the crop
    assert tuple(crops[2][0, 0]) == CROP_GREY  # beyond the image's top-left corner
    assert np.all(crops[4] == CROP_GREY)  # an empty mask gives a blank crop

    blurred = mask_crops(image, segments, [1], size=32, scales=(1.0,), margin=0.1, background="blur")[0]
    assert blurred[1, 1, 2] > 100 and tuple(blurred[16, 16]) == (255, 0, 0)  # blurred blue around the mask


def test_embed_masks_is_deterministic_and_normalised() -> None:
    encoder = load_image_encoder(TINY_CLIP)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    segments = np.zeros((48, 64), dtype=np.uint8)
    segments[5:20, 5:30], segments[25:45, 30:60] = 1, 2
    first = embed_masks(encoder, image, segments, 3, batch_size=4)  # mask 3 is empty
    again = embed_masks(encoder, image, segments, 3, batch_size=64)
    assert first.shape == (3, 64) and first.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(first, again, atol=1e-5)  # batching does not matter
    assert embed_masks(encoder, image, segments, 0).shape == (0, 64)


# --------------------------------------------------------------------------------- relations


def test_parse_relations_normalises_and_skips_bad_entries() -> None:
    record = {
        "status": "ok",
        "objects": {"1": "  Wooden  Chair ", "2": "table", "9": "ghost", "x": "bad"},
        "relations": [
            {"subject": 1, "object": 2, "predicates": ["Standing On ", "none", ""]},
            {"subject": "1", "object": "2", "predicates": ["next to", "standing on"]},
            {"subject": 1, "object": 9, "predicates": ["near"]},
            {"subject": 2, "object": 2, "predicates": ["near"]},
            {"subject": 2, "object": 1, "predicates": ["none"]},
            {"subject": True, "object": 1, "predicates": ["near"]},
            "garbage",
        ],
    }
    parsed = parse_relations(record, num_masks=3)
    assert parsed.status == "ok"
    assert parsed.objects == {1: "wooden chair", 2: "table"}
    assert parsed.relations == [(1, 2, ("standing on", "next to"))]
    assert len(parsed.problems) == 7
    failed = parse_relations({"status": "failed", "objects": {"1": "chair"}}, num_masks=3)
    assert failed.status == "failed" and not failed.objects and not failed.relations


# ------------------------------------------------------------------------------------ the stage


def test_embed_with_clip_writes_a_fresh_store(clip_store, truth: GroundTruthWorkspace) -> None:
    capture, summary = clip_store
    labels_dir = capture / "relationfield"
    store = LabelStore.open(labels_dir, data_dir=capture)  # the freshness check passes
    manifest = store.manifest
    assert manifest["semantic"] == {"encoder": TINY_CLIP, "dim": 64}
    assert manifest["relation"] == {"encoder": OFFLINE_TEXT_ENCODER, "dim": 384}
    assert manifest["producer"]["tool"] == "embed"
    assert manifest["producer"]["options"]["semantic_source"] == "clip"
    assert manifest["frames"]["names"] == truth.names  # failed and unasked frames keep their masks

    assert summary["labelled"] == 4 and summary["frames"] == 4
    assert (summary["relations_ok"], summary["relations_failed"], summary["relations_missing"]) == (2, 1, 1)
    assert summary["masks"] == store.num_masks == sum(len(ids) for ids in truth.object_ids.values())
    assert summary["relations"] == store.num_relations == sum(len(r) for r in truth.relations.values())
    assert "2 ok, 1 failed, 1 missing" in summary_text(summary)

    expected_predicates = sorted({p for rels in truth.relations.values() for _, _, preds in rels for p in preds})
    assert store.predicates == expected_predicates
    for index, name in enumerate(truth.names):
        arrays = frame_arrays(labels_dir, name)
        assert arrays["mask_embeddings"].shape == (len(truth.object_ids[name]), 64)
        got = {
            (int(s), int(o)): tuple(sorted(store.predicates[i] for i in ids if i >= 0))
            for (s, o), ids in zip(arrays["relations"], arrays["relation_predicates"])
        }
        assert got == {(s, o): tuple(sorted(p)) for s, o, p in truth.relations[name]}
        if index in (FAILED_FRAME, UNASKED_FRAME):
            assert not got and set(arrays["mask_labels"].tolist()) == {""}
        else:
            assert got and "" not in arrays["mask_labels"].tolist()

    # Query time: the manifest's semantic encoder reloads as the CLIP text tower of the same dim.
    query_encoder = load_text_encoder(manifest["semantic"]["encoder"])
    assert isinstance(query_encoder, ClipTextEncoder) and query_encoder.dim == manifest["semantic"]["dim"]


def test_embed_rerun_uses_the_cache_and_rewrites_the_same_store(clip_store, truth) -> None:
    capture, first_summary = clip_store
    labels_dir = capture / "relationfield"
    before = {name: frame_arrays(labels_dir, name) for name in truth.names}
    assert first_summary["cached"] == 0
    assert all(embeddings_path(capture / "relationfield_work", name).is_file() for name in truth.names)

    again = run_embed(embed_config(capture), progress=False)
    assert again["cached"] == 4
    recomputed = run_embed(embed_config(capture, overwrite=True), progress=False)
    assert recomputed["cached"] == 0
    for name in truth.names:
        after = frame_arrays(labels_dir, name)
        assert before[name].keys() == after.keys()
        for key in before[name]:
            np.testing.assert_array_equal(before[name][key], after[key])
    LabelStore.open(labels_dir, data_dir=capture)


def test_embed_with_text_semantics(capture: Path, truth: GroundTruthWorkspace) -> None:
    summary = run_embed(embed_config(capture, semantic_source="text"), progress=False)
    labels_dir = capture / "relationfield"
    store = LabelStore.open(labels_dir, data_dir=capture)
    assert store.manifest["semantic"] == {"encoder": OFFLINE_TEXT_ENCODER, "dim": 384}
    ok_names = [n for i, n in enumerate(truth.names) if i not in (FAILED_FRAME, UNASKED_FRAME)]
    assert store.manifest["frames"]["names"] == ok_names  # frames without names have no mask left
    assert summary["empty"] == 2 and summary["unnamed_masks"] == sum(
        len(truth.object_ids[truth.names[i]]) for i in (FAILED_FRAME, UNASKED_FRAME)
    )

    encoder = load_text_encoder(OFFLINE_TEXT_ENCODER)
    by_label: dict[str, np.ndarray] = {}
    for label, row in zip(store.mask_labels, store.mask_embeddings.float().numpy()):
        assert label
        if label in by_label:
            np.testing.assert_array_equal(by_label[label], row)  # the same name, the same embedding
        by_label[label] = row
    assert len(by_label) < len(store.mask_labels)  # some name occurs in several frames
    expected = encoder.encode(sorted(by_label)).numpy()
    np.testing.assert_allclose(np.stack([by_label[k] for k in sorted(by_label)]), expected, atol=2e-3)


def test_embed_skips_relations_to_absent_masks(capture: Path, truth, caplog) -> None:
    name = truth.names[0]
    path = relations_path(capture / "relationfield_work", name)
    record = read_json(path)
    first = record["relations"][0]
    record["relations"] += [
        {"subject": first["subject"], "object": 250, "predicates": ["near"]},
        {"subject": first["subject"], "object": first["subject"], "predicates": ["near"]},
        {"subject": first["subject"], "object": first["object"], "predicates": ["  HANGING   on "]},
    ]
    write_json_atomic(path, record)
    with caplog.at_level(logging.WARNING, logger="relationfield.preprocess.embed_inputs"):
        summary = run_embed(embed_config(capture), progress=False)
    assert summary["skipped_entries"] == 2
    assert "absent from the masks file" in caplog.text
    store = LabelStore.open(capture / "relationfield", data_dir=capture)
    assert "hanging on" in store.predicates  # merged into the existing pair, normalised
    assert summary["relations"] == sum(len(r) for r in truth.relations.values())


def test_embed_without_masks_says_to_run_masks(tmp_path: Path, pristine: Path) -> None:
    capture = Path(shutil.copytree(pristine, tmp_path / "capture"))
    shutil.rmtree(capture / "relationfield_work")
    with pytest.raises(UserError, match="relationfield masks"):
        run_embed(embed_config(capture), progress=False)
    with pytest.raises(UserError, match="transforms.json"):
        run_embed(embed_config(tmp_path / "nowhere"), progress=False)


def test_stale_inputs_stop_before_the_store_is_touched(capture: Path, truth) -> None:
    run_embed(embed_config(capture, semantic_source="text"), progress=False)
    manifest = capture / "relationfield" / MANIFEST_FILE
    assert manifest.is_file()
    workspace = capture / "relationfield_work"

    # Relations answered about other masks than the current ones.
    path = relations_path(workspace, truth.names[0])
    record = read_json(path)
    write_json_atomic(path, {**record, "masks_hash": "0" * 64})
    with pytest.raises(UserError, match="relationfield relations"):
        run_embed(embed_config(capture, semantic_source="text"), progress=False)
    write_json_atomic(path, record)

    # An image changed after segmentation.
    from PIL import Image

    image_path = capture / truth.names[3]
    pixels = np.asarray(Image.open(image_path)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(image_path)
    with pytest.raises(UserError, match="relationfield masks"):
        run_embed(embed_config(capture, semantic_source="text"), progress=False)
    assert manifest.is_file()  # the previous store is still complete

    # An unreadable masks file.
    masks_path(workspace, truth.names[3]).write_bytes(b"not an npz")
    with pytest.raises(UserError, match="Cannot read the masks file"):
        run_embed(embed_config(capture, semantic_source="text"), progress=False)


def test_config_validation(capture: Path) -> None:
    for overrides in ({"batch_size": 0}, {"crop_scales": ()}, {"crop_scales": (1.0, -1.0)}, {"crop_margin": 2.0}):
        with pytest.raises(UserError):
            run_embed(embed_config(capture, **overrides), progress=False)


def test_embed_config_is_tyro_ready() -> None:
    import tyro

    config = tyro.cli(
        EmbedConfig,
        args=["--data", "cap", "--semantic-source", "text", "--crop-scales", "1", "2", "--labels-dir", "out"],
    )
    assert config.semantic_source == "text" and config.crop_scales == (1.0, 2.0)
    assert config.labels_dir == Path("out") and config.workspace is None and config.device is None


def test_manifest_options_hold_no_secrets(clip_store) -> None:
    capture, _ = clip_store
    manifest = json.loads((capture / "relationfield" / MANIFEST_FILE).read_text())
    options = manifest["producer"]["options"]
    assert set(options) == {
        "semantic_source",
        "semantic_encoder",
        "text_encoder",
        "workspace",
        "crop_scales",
        "crop_margin",
        "crop_background",
    }
