"""The masks stage (relationfield.preprocess.masks): filtering, the masks-file contract, resuming,
and SAM's real automatic-mask-generator code path with a tiny randomly initialised model."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from preprocess_stubs import GroundTruthMaskGenerator

from relationfield.errors import UserError
from relationfield.labels.format import file_sha256
from relationfield.preprocess import sam as sam_module
from relationfield.preprocess.mask_filter import filter_masks
from relationfield.preprocess.masks import MasksConfig, run_masks, scaled_size, summary_text, upscale_mask
from relationfield.preprocess.sam import (
    SAM_CHECKPOINT_URLS,
    MaskGenerator,
    SamMaskGenerator,
    lean_attention,
    load_sam,
)
from relationfield.preprocess.workspace import masks_path

MASK_KEYS = {"name", "image_hash", "segments", "scores"}


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def pristine_capture(tmp_path_factory) -> Path:
    """A 4-frame 64x48 synthetic capture, generated once for this module (copy it before changing it)."""
    from relationfield.synth import generate_capture

    out = tmp_path_factory.mktemp("masks_synth") / "capture"
    generate_capture(out, seed=0, num_frames=4, resolution=(64, 48), progress=False)
    return out


@pytest.fixture
def capture(pristine_capture, tmp_path) -> Path:
    """A private copy of the synthetic capture."""
    return Path(shutil.copytree(pristine_capture, tmp_path / "capture"))


def frame_names(capture_dir: Path) -> list[str]:
    frames = json.loads((capture_dir / "transforms.json").read_text())["frames"]
    return [frame["file_path"] for frame in frames]


def read_masks(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def check_contract(path: Path, capture_dir: Path, name: str) -> dict[str, np.ndarray]:
    """Assert that ``path`` is a valid masks file of the image ``name`` (workspace.py's contract)."""
    arrays = read_masks(path)
    assert set(arrays) == MASK_KEYS
    assert arrays["name"].shape == () and str(arrays["name"]) == name
    assert arrays["image_hash"].shape == () and str(arrays["image_hash"]) == file_sha256(capture_dir / name)
    with Image.open(capture_dir / name) as image:
        width, height = image.size
    segments, scores = arrays["segments"], arrays["scores"]
    assert segments.shape == (height, width)
    num = len(scores)
    assert segments.dtype == (np.uint8 if num <= 255 else np.uint16)
    assert scores.dtype == np.float32 and scores.shape == (num,)
    assert set(np.unique(segments).tolist()) - {0} == set(range(1, num + 1))  # ids 1..n, all present
    return arrays


def record(mask: np.ndarray, quality: float = 1.0) -> dict:
    return {"segmentation": mask, "area": int(mask.sum()), "predicted_iou": quality, "stability_score": 1.0}


def box(shape, row0, row1, col0, col1) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[row0:row1, col0:col1] = True
    return mask


def tiny_sam(width: int = 32, seed: int = 0):
    """A randomly initialised SAM small enough for a CPU test (64 px input, 4x4 image embedding)."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    img_size, patch = 64, 16
    grid = img_size // patch
    model = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch,
            embed_dim=32,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            out_chans=width,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=0,
            global_attn_indexes=(),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=width, image_embedding_size=(grid, grid), input_image_size=(img_size, img_size), mask_in_chans=4
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=1, embedding_dim=width, mlp_dim=64, num_heads=2),
            transformer_dim=width,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return model.eval()


# --------------------------------------------------------------------------- filter_masks


def test_filter_drops_small_masks_and_orders_by_area():
    shape = (40, 50)
    small = box(shape, 0, 1, 0, 1)  # 1 pixel of 2000 < 0.1 %
    medium, large = box(shape, 10, 20, 10, 20), box(shape, 0, 30, 0, 40)
    kept = filter_masks([record(small), record(medium, 0.99), record(large, 0.5)], max_masks=10)
    assert [int(r["segmentation"].sum()) for r in kept] == [1200, 100]  # largest first, whatever the quality


def test_filter_drops_near_duplicates_keeping_the_better_one():
    shape = (40, 40)
    original = box(shape, 5, 25, 5, 25)
    shifted = box(shape, 6, 26, 5, 25)  # IoU 380 / 420 = 0.90
    nested = box(shape, 10, 15, 10, 15)  # inside, IoU 0.06: not a duplicate
    better, worse, inner = record(shifted, 0.95), record(original, 0.9), record(nested, 0.8)
    kept = filter_masks([worse, better, inner], max_masks=10)
    assert kept[0] is better and kept[1] is inner and len(kept) == 2
    assert len(filter_masks([worse, better], max_masks=10, duplicate_iou=0.95)) == 2


def test_filter_keeps_the_best_max_masks():
    shape = (30, 30)
    records = [record(box(shape, 3 * i, 3 * i + 3, 0, 3 + i), quality=q) for i, q in enumerate([0.5, 0.9, 0.7, 0.95])]
    kept = filter_masks(records, max_masks=2)
    assert {id(r) for r in kept} == {id(records[1]), id(records[3])}
    assert kept == [records[3], records[1]]  # then by area: mask 3 (3x6) before mask 1 (3x4)


def test_filter_edge_cases():
    assert filter_masks([], max_masks=3) == []
    with pytest.raises(ValueError, match="max_masks"):
        filter_masks([], max_masks=0)
    with pytest.raises(ValueError, match="same size"):
        filter_masks([record(np.ones((4, 4), bool)), record(np.ones((4, 5), bool))], max_masks=3)
    assert filter_masks([record(np.zeros((4, 4), bool))], max_masks=3, min_area_fraction=0.0) == []


# --------------------------------------------------------------------------- run_masks with ground-truth masks


def test_ground_truth_masks_follow_the_contract(capture):
    stub = GroundTruthMaskGenerator(capture)
    assert isinstance(stub, MaskGenerator)
    summary = run_masks(MasksConfig(data=capture), generator=stub, progress=False)
    names = frame_names(capture)
    assert summary["segmented"] == 4 and summary["skipped"] == 0 and summary["failed"] == {}
    assert stub.calls == names
    workspace = capture / "relationfield_work"
    assert summary["workspace"] == str(workspace)
    total = 0
    for name in names:
        path = masks_path(workspace, name)
        assert path.parent == workspace / "masks"
        arrays = check_contract(path, capture, name)
        total += len(arrays["scores"])
        # the segment map is the instance map up to renumbering (ground-truth masks do not overlap)
        instances = stub.instance_map(name)
        # (objects below min_area_fraction are dropped, so only the kept segments are compared)
        segments = arrays["segments"].ravel()
        pairs = set(zip(segments[segments > 0].tolist(), instances.ravel()[segments > 0].tolist()))
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs}) == len(arrays["scores"])
        large_enough = np.bincount(instances.ravel())[1:] >= 0.001 * instances.size
        assert len(arrays["scores"]) == int(large_enough.sum())
        np.testing.assert_array_equal(arrays["scores"], 1.0)
        areas = np.bincount(arrays["segments"].ravel())[1:]
        assert list(areas) == sorted(areas, reverse=True)  # mask 1 is the largest
    assert summary["masks"] == total
    assert "Segmented 4 of 4" in summary_text(summary)


def test_resume_skips_done_frames_and_redoes_changed_images(capture):
    config = MasksConfig(data=capture, workspace=capture / "work")
    run_masks(config, generator=GroundTruthMaskGenerator(capture), progress=False)
    names = frame_names(capture)

    again = GroundTruthMaskGenerator(capture)
    summary = run_masks(config, generator=again, progress=False)
    assert (summary["segmented"], summary["skipped"], again.calls) == (0, 4, [])

    changed = names[2]
    pixels = np.asarray(Image.open(capture / changed)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(capture / changed)
    third = GroundTruthMaskGenerator(capture)
    summary = run_masks(config, generator=third, progress=False)
    assert (summary["segmented"], summary["skipped"], third.calls) == (1, 3, [changed])
    check_contract(masks_path(config.workspace, changed), capture, changed)


def test_overwrite_segments_everything_again(capture):
    config = MasksConfig(data=capture)
    run_masks(config, generator=GroundTruthMaskGenerator(capture), progress=False)
    stub = GroundTruthMaskGenerator(capture)
    summary = run_masks(MasksConfig(data=capture, overwrite=True), generator=stub, progress=False)
    assert summary["segmented"] == 4 and summary["skipped"] == 0 and len(stub.calls) == 4


def test_max_masks_is_respected(capture):
    stub = GroundTruthMaskGenerator(capture)
    run_masks(MasksConfig(data=capture, max_masks=2), generator=stub, progress=False)
    for name in frame_names(capture):
        arrays = check_contract(masks_path(capture / "relationfield_work", name), capture, name)
        visible = int((np.bincount(stub.instance_map(name).ravel())[1:] >= 0.001 * 64 * 48).sum())
        assert len(arrays["scores"]) == min(2, visible)


def test_near_duplicate_masks_are_filtered(capture):
    def shifted_copies(name, ids):
        """Each object's mask less one pixel (IoU with the original >= 0.95)."""
        copies = []
        for object_id in np.unique(ids)[1:]:
            mask = ids == object_id
            if mask.sum() < 20:
                continue
            copy = mask.copy()
            copy.flat[np.flatnonzero(mask)[0]] = False
            copies.append(copy)
        assert copies
        return copies

    plain, noisy = GroundTruthMaskGenerator(capture), GroundTruthMaskGenerator(capture, extra=shifted_copies)
    run_masks(MasksConfig(data=capture, workspace=capture / "plain"), generator=plain, progress=False)
    run_masks(MasksConfig(data=capture, workspace=capture / "noisy"), generator=noisy, progress=False)
    for name in frame_names(capture):
        a = read_masks(masks_path(capture / "plain", name))
        b = read_masks(masks_path(capture / "noisy", name))
        np.testing.assert_array_equal(a["segments"], b["segments"])
        np.testing.assert_array_equal(a["scores"], b["scores"])


def test_frame_selection_limits_the_frames(capture):
    stub = GroundTruthMaskGenerator(capture)
    summary = run_masks(MasksConfig(data=capture, stride=2), generator=stub, progress=False)
    names = frame_names(capture)
    assert stub.calls == [names[0], names[2]] and summary["selected"] == 2 and summary["frames"] == 4
    stub = GroundTruthMaskGenerator(capture)
    summary = run_masks(
        MasksConfig(data=capture, max_frames=3, workspace=capture / "w3"), generator=stub, progress=False
    )
    assert len(stub.calls) == 3 and stub.calls[0] == names[0]
    assert sorted(p.name for p in (capture / "w3" / "masks").iterdir()) == sorted(
        Path(n).stem + ".npz" for n in stub.calls
    )


def test_unreadable_images_fail_alone(capture):
    names = frame_names(capture)
    (capture / names[1]).unlink()
    (capture / names[3]).write_bytes(b"not a png")
    summary = run_masks(MasksConfig(data=capture), generator=GroundTruthMaskGenerator(capture), progress=False)
    assert summary["segmented"] == 2
    assert set(summary["failed"]) == {names[1], names[3]}
    assert "does not exist" in summary["failed"][names[1]] and "cannot read" in summary["failed"][names[3]]
    assert not masks_path(capture / "relationfield_work", names[1]).exists()
    assert "Failed frames" in summary_text(summary)


def test_no_frame_segmented_is_an_error(capture):
    for name in frame_names(capture):
        (capture / name).unlink()
    with pytest.raises(UserError, match="no frame could be segmented"):
        run_masks(MasksConfig(data=capture), generator=GroundTruthMaskGenerator(capture), progress=False)


def test_bad_options_are_user_errors(capture):
    bad = (
        {"max_masks": 0},
        {"stride": 0},
        {"max_frames": 0},
        {"points_per_side": 0},
        {"max_image_side": -1},
        {"points_per_batch": 0},
        {"crop_n_layers": -1},
    )
    for options in bad:
        with pytest.raises(UserError):
            run_masks(MasksConfig(data=capture, **options), generator=GroundTruthMaskGenerator(capture), progress=False)
    with pytest.raises(UserError, match="transforms.json"):
        run_masks(MasksConfig(data=capture / "nowhere"), generator=GroundTruthMaskGenerator(capture), progress=False)


# --------------------------------------------------------------------------- SAM checkpoints


def test_missing_checkpoint_names_the_downloads(capture):
    with pytest.raises(UserError) as caught:
        run_masks(MasksConfig(data=capture), progress=False)
    message = str(caught.value)
    assert "--sam-checkpoint" in message
    for url in SAM_CHECKPOINT_URLS.values():
        assert url in message
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth" in message

    with pytest.raises(UserError, match="sam_vit_b_01ec64.pth"):
        run_masks(MasksConfig(data=capture, sam_checkpoint=capture / "missing.pth"), progress=False)


def test_up_to_date_run_needs_no_checkpoint_but_a_given_one_must_exist(capture):
    run_masks(MasksConfig(data=capture), generator=GroundTruthMaskGenerator(capture), progress=False)
    summary = run_masks(MasksConfig(data=capture), progress=False)  # nothing to do: SAM is never built
    assert summary["skipped"] == 4
    with pytest.raises(UserError, match="does not exist"):
        run_masks(MasksConfig(data=capture, sam_checkpoint=capture / "missing.pth"), progress=False)


@pytest.fixture
def tiny_registry(monkeypatch):
    """Make segment-anything's builders for every model type build :func:`tiny_sam` (no 2.5 GB vit_h)."""
    from segment_anything import sam_model_registry

    for kind in ("vit_h", "vit_l", "vit_b"):
        monkeypatch.setitem(sam_model_registry, kind, lambda checkpoint=None: tiny_sam(seed=1))


def test_load_sam_reads_a_state_dict_with_weights_only(tmp_path, tiny_registry):
    source = tiny_sam(seed=0)
    path = tmp_path / "sam.pth"
    torch.save(source.state_dict(), path)
    loaded = load_sam(path, "vit_b", device="cpu")
    assert not loaded.training
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)


def test_load_sam_rejects_mismatched_and_foreign_checkpoints(tmp_path, tiny_registry):
    state = tiny_sam(width=16).state_dict()  # does not fit the (width 32) registered builder
    state["image_encoder.pos_embed"] = torch.zeros(1, 4, 4, 768)  # looks like vit_b's encoder
    mismatched = tmp_path / "vit_b_like.pth"
    torch.save(state, mismatched)
    with pytest.raises(UserError, match="does not fit --model-type vit_h") as caught:
        load_sam(mismatched, "vit_h", device="cpu")
    assert "--model-type vit_b" in str(caught.value)

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(UserError, match="Cannot read the SAM checkpoint"):
        load_sam(garbage, "vit_b", device="cpu")

    not_tensors = tmp_path / "config.pth"
    torch.save({"lr": 0.1}, not_tensors)
    with pytest.raises(UserError, match="not a SAM checkpoint"):
        load_sam(not_tensors, "vit_b", device="cpu")


# --------------------------------------------------------------------------- SAM's real code path


@pytest.mark.parametrize("threshold", [0.0, 0.999])
def test_sam_automatic_masks_end_to_end(capture, threshold):
    """SAM's automatic mask generator with random weights: masks (threshold 0) or none (0.999) both
    give a valid masks file."""
    generator = SamMaskGenerator(
        tiny_sam(), points_per_side=4, pred_iou_thresh=threshold, stability_score_thresh=threshold
    )
    summary = run_masks(MasksConfig(data=capture, max_frames=2, max_masks=5), generator=generator, progress=False)
    assert summary["segmented"] == 2 and summary["failed"] == {}
    for name in frame_names(capture)[:4]:
        path = masks_path(capture / "relationfield_work", name)
        if path.exists():
            arrays = check_contract(path, capture, name)
            assert len(arrays["scores"]) <= 5
            if threshold > 0.99:
                assert len(arrays["scores"]) == 0 and not arrays["segments"].any()


def test_checkpoint_path_through_the_config(capture, tmp_path, tiny_registry):
    """The run builds SAM from --sam-checkpoint/--model-type when no generator is passed."""
    path = tmp_path / "sam_vit_b.pth"
    torch.save(tiny_sam(seed=1).state_dict(), path)
    config = MasksConfig(
        data=capture,
        sam_checkpoint=path,
        model_type="vit_b",
        device="cpu",
        points_per_side=4,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        max_frames=1,
    )
    summary = run_masks(config, progress=True)
    assert summary["segmented"] == 1
    name = frame_names(capture)[0]
    check_contract(masks_path(capture / "relationfield_work", name), capture, name)


def test_corrupt_masks_files_are_redone(capture):
    config = MasksConfig(data=capture)
    run_masks(config, generator=GroundTruthMaskGenerator(capture), progress=False)
    names = frame_names(capture)
    workspace = capture / "relationfield_work"
    masks_path(workspace, names[0]).write_bytes(b"PK\x03\x04 truncated")
    masks_path(workspace, names[1]).write_bytes(b"garbage")
    stub = GroundTruthMaskGenerator(capture)
    summary = run_masks(config, generator=stub, progress=False)
    assert (summary["segmented"], summary["skipped"], stub.calls) == (2, 2, names[:2])
    for name in names[:2]:
        check_contract(masks_path(workspace, name), capture, name)


# --------------------------------------------------------------------------- memory: downscaled frames, SAM options


def single_frame_capture(root: Path, width: int, height: int) -> Path:
    """A one-frame capture whose image is ``width`` x ``height`` (two flat rectangles on grey)."""
    (root / "images").mkdir(parents=True)
    pixels = np.full((height, width, 3), 120, dtype=np.uint8)
    pixels[height // 4 : height // 2, width // 4 : width // 2] = (200, 30, 30)
    pixels[height // 2 :, width // 2 :] = (20, 40, 220)
    Image.fromarray(pixels).save(root / "images" / "frame_00000.png")
    frames = [{"file_path": "images/frame_00000.png", "transform_matrix": np.eye(4).tolist()}]
    (root / "transforms.json").write_text(json.dumps({"w": width, "h": height, "frames": frames}))
    return root


class BoxGenerator:
    """Answers every image with fixed boxes given as fractions of the image it receives, and records
    the images it was given."""

    def __init__(self, boxes: list[tuple[float, float, float, float]]) -> None:
        self.boxes = boxes
        self.images: list[np.ndarray] = []

    def pixel_boxes(self, shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        height, width = shape
        return [
            (round(r0 * height), round(r1 * height), round(c0 * width), round(c1 * width))
            for r0, r1, c0, c1 in self.boxes
        ]

    def generate(self, image: np.ndarray, name: str) -> list[dict]:
        self.images.append(image)
        return [record(box(image.shape[:2], *edges)) for edges in self.pixel_boxes(image.shape[:2])]


def test_scaled_size_keeps_the_aspect_and_leaves_small_frames_alone():
    assert scaled_size(2160, 3840, 1280) == (720, 1280)
    assert scaled_size(1080, 1920, 1280) == (720, 1280)
    assert scaled_size(3840, 2160, 1280) == (1280, 720)  # portrait
    assert scaled_size(3000, 4000, 1280) == (960, 1280)
    assert scaled_size(4000, 1, 1000) == (1000, 1)  # the short side never vanishes
    assert scaled_size(48, 64, 1280) == (48, 64) and scaled_size(1280, 720, 1280) == (1280, 720)
    assert scaled_size(2160, 3840, 0) == (2160, 3840)  # 0: full resolution


def test_upscale_mask_stays_within_a_source_pixel_of_nearest_neighbour():
    rng = np.random.default_rng(0)
    mask = rng.random((30, 40)) > 0.5
    np.testing.assert_array_equal(upscale_mask(mask, (60, 80)), mask.repeat(2, 0).repeat(2, 1))  # factor 2: exact
    big = upscale_mask(box((30, 40), 5, 20, 8, 30), (90, 120))
    assert big.dtype == bool and big.shape == (90, 120)
    assert big[15 + 1 : 60 - 1, 24 + 1 : 90 - 1].all()  # the box's inside, 3x
    outside = ~box((90, 120), 15 - 1, 60 + 1, 24 - 1, 90 + 1)
    assert not big[outside].any()
    np.testing.assert_array_equal(upscale_mask(mask, (30, 40)), mask)  # same size: unchanged


def test_a_large_frame_is_downscaled_for_the_generator_and_its_masks_come_back_at_full_size(tmp_path):
    capture_dir = single_frame_capture(tmp_path / "capture", 3840, 2160)
    name = "images/frame_00000.png"
    # a large box and a small one inside it (the smaller wins where they overlap), in fractions of the image
    stub = BoxGenerator([(0.1, 0.7, 0.1, 0.6), (0.2, 0.3, 0.2, 0.3)])
    summary = run_masks(MasksConfig(data=capture_dir), generator=stub, progress=False)  # default --max-image-side
    assert summary["segmented"] == 1 and summary["masks"] == 2
    (seen,) = stub.images
    assert seen.shape == (720, 1280, 3) and seen.dtype == np.uint8  # long side: max_image_side
    # the generator got the (antialiased) downscaled frame: the red rectangle is where it was
    np.testing.assert_array_equal(seen[200, 400], (200, 30, 30))
    np.testing.assert_array_equal(seen[500, 1000], (20, 40, 220))

    arrays = check_contract(masks_path(capture_dir / "relationfield_work", name), capture_dir, name)
    segments = arrays["segments"]
    assert segments.shape == (2160, 3840)  # the label resolution is the image's, as before
    (r0, r1, c0, c1), (s0, s1, t0, t1) = stub.pixel_boxes((2160, 3840))
    margin = 3  # one pixel of the 3x smaller image
    assert (segments[r0 + margin : r1 - margin, c0 + margin : c1 - margin] != 0).all()
    assert (segments[s0 + margin : s1 - margin, t0 + margin : t1 - margin] == 2).all()  # the small box is mask 2
    assert (segments[r0 + margin : s0 - margin, c0 + margin : c1 - margin] == 1).all()  # the large one outside it
    outside = ~box(segments.shape, r0 - margin, r1 + margin, c0 - margin, c1 + margin)
    assert not segments[outside].any()
    area = (r1 - r0) * (c1 - c0) - (s1 - s0) * (t1 - t0)
    assert abs(int((segments == 1).sum()) - area) < 2 * margin * ((r1 - r0) + (c1 - c0))


def test_max_image_side_zero_and_small_frames_reach_the_generator_unchanged(tmp_path):
    capture_dir = single_frame_capture(tmp_path / "capture", 1500, 900)
    stub = BoxGenerator([(0.1, 0.5, 0.1, 0.5)])
    run_masks(MasksConfig(data=capture_dir, max_image_side=0), generator=stub, progress=False)
    run_masks(MasksConfig(data=capture_dir, max_image_side=1500, overwrite=True), generator=stub, progress=False)
    run_masks(MasksConfig(data=capture_dir, max_image_side=500, overwrite=True), generator=stub, progress=False)
    assert [image.shape[:2] for image in stub.images] == [(900, 1500), (900, 1500), (300, 500)]
    original = np.asarray(Image.open(capture_dir / "images" / "frame_00000.png"))
    np.testing.assert_array_equal(stub.images[0], original)


def test_masks_of_the_wrong_size_are_an_error(tmp_path):
    """A generator must answer with masks of the image it was given, not of the full frame."""
    capture_dir = single_frame_capture(tmp_path / "capture", 800, 400)

    class FullSize(BoxGenerator):
        def generate(self, image, name):
            return [record(box((400, 800), 10, 200, 10, 300))]

    with pytest.raises(ValueError, match="masks of size"):
        run_masks(MasksConfig(data=capture_dir, max_image_side=400), generator=FullSize([]), progress=False)


class SpyAutomaticMaskGenerator:
    """Stands in for segment_anything.SamAutomaticMaskGenerator, recording its arguments and building
    the real one."""

    calls: list[dict] = []

    def __new__(cls, model, **kwargs):
        from segment_anything.automatic_mask_generator import SamAutomaticMaskGenerator

        cls.calls.append(kwargs)
        return SamAutomaticMaskGenerator(model, **kwargs)


def test_sam_options_reach_the_automatic_mask_generator(capture, tmp_path, tiny_registry, monkeypatch):
    import segment_anything

    SpyAutomaticMaskGenerator.calls = []
    monkeypatch.setattr(segment_anything, "SamAutomaticMaskGenerator", SpyAutomaticMaskGenerator)
    path = tmp_path / "sam_vit_b.pth"
    torch.save(tiny_sam(seed=1).state_dict(), path)
    options = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "max_frames": 1}
    config = MasksConfig(data=capture, sam_checkpoint=path, model_type="vit_b", device="cpu", **options)
    run_masks(MasksConfig(**{**vars(config), "points_per_batch": 5, "crop_n_layers": 1}), progress=False)
    run_masks(MasksConfig(**{**vars(config), "workspace": tmp_path / "defaults"}), progress=False)
    (chosen, defaults) = SpyAutomaticMaskGenerator.calls
    assert (chosen["points_per_batch"], chosen["crop_n_layers"], chosen["points_per_side"]) == (5, 1, 4)
    assert (defaults["points_per_batch"], defaults["crop_n_layers"]) == (16, 0)  # the memory-safe defaults
    name = frame_names(capture)[0]
    check_contract(masks_path(capture / "relationfield_work", name), capture, name)  # the crops run for real


def test_sam_segments_a_downscaled_frame_end_to_end(tmp_path):
    """SAM's real code path on a frame larger than --max-image-side: SAM sees the small image, the
    masks file has the frame's size."""
    capture_dir = single_frame_capture(tmp_path / "capture", 300, 180)
    sam = SamMaskGenerator(tiny_sam(), points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    seen: list[tuple[int, ...]] = []

    class Recording:
        def generate(self, image, name):
            seen.append(image.shape)
            records = sam.generate(image, name)
            assert all(r["segmentation"].shape == image.shape[:2] for r in records)
            return records

    summary = run_masks(MasksConfig(data=capture_dir, max_image_side=100), generator=Recording(), progress=False)
    assert summary["segmented"] == 1 and seen == [(60, 100, 3)]
    name = "images/frame_00000.png"
    check_contract(masks_path(capture_dir / "relationfield_work", name), capture_dir, name)


def test_lean_attention_computes_the_same_image_embedding(monkeypatch):
    monkeypatch.setattr(sam_module, "ATTENTION_CHUNK_BYTES", 1)  # one head at a time
    plain, lean = tiny_sam(seed=3), tiny_sam(seed=3)
    with torch.no_grad():  # SAM initialises the relative positions to zero: make them count
        for block in plain.image_encoder.blocks:
            block.attn.rel_pos_h.normal_()
            block.attn.rel_pos_w.normal_()
    lean.load_state_dict(plain.state_dict())
    lean_attention(lean)
    SamMaskGenerator(lean)  # the generator applies it too; applying it twice changes nothing
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected, got = plain.image_encoder(images), lean.image_encoder(images)
    assert lean.image_encoder.blocks[0].attn.forward.__func__ is sam_module._chunked_attention
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_load_sam_builds_no_random_copy_and_returns_float32(tmp_path, tiny_registry, monkeypatch):
    path = tmp_path / "half.pth"
    torch.save(tiny_sam(seed=0).half().state_dict(), path)
    loaded = load_sam(path, "vit_b", device="cpu")
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert not any(t.is_meta for t in tensors) and all(t.dtype == torch.float32 for t in tensors)

    from segment_anything import sam_model_registry

    def with_scratch_buffer(checkpoint=None):  # a buffer the checkpoint cannot fill
        model = tiny_sam(seed=1)
        model.register_buffer("scratch", torch.zeros(3), persistent=False)
        return model

    monkeypatch.setitem(sam_model_registry, "vit_b", with_scratch_buffer)
    torch.save(tiny_sam(seed=0).state_dict(), path)
    with pytest.raises(UserError, match="leaves part"):
        load_sam(path, "vit_b", device="cpu")
