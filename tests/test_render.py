"""``relationfield render``: relevancy composited over RGB along a camera path, as PNG frames and an mp4.

The fast tests cover the compositing, the instance mask, the encoder and the argument errors; the slow ones
render the shared short-trained run (small frames, few of them: a CPU renders about 2k rays a second).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from relationfield import relevancy_video
from relationfield.cli import entrypoint
from relationfield.errors import UserError
from relationfield.relevancy_image import InstanceMask, RelevancyRequest, composite_relevancy, relevancy_colors
from relationfield.relevancy_video import encode_mp4, to_uint8

DOWNSCALE = "2"
"""The shared capture is 96x72: frames of 48x36 keep the slow tests short."""


def _fails(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["render", *args])
    assert exit_info.value.code != 0
    return capsys.readouterr().err


def _frames(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.glob("*.png"))]


def _decoded(video: Path) -> tuple[list[np.ndarray], float]:
    """The video's frames (PyAV decodes it) and its frame rate."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return frames, float(stream.average_rate)


def _pooled(image: np.ndarray) -> np.ndarray:
    """2x2 means: the resolution of a 4:2:0 video's colours."""
    height, width = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:height, :width].astype(float).reshape(height // 2, 2, width // 2, 2, 3).mean(axis=(1, 3))


def _write_pngs(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for index in range(count):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        image[:, : size[0] * (index + 1) // count] = (200, 60, 20)
        paths.append(folder / f"{index:05d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


# ------------------------------------------------------------------ fast: no trained run
def test_turbo_colours_match_nerfstudios_colormap():
    from nerfstudio.utils.colormaps import apply_float_colormap

    relevancy = torch.tensor([[-0.2, 0.0, 0.3], [0.5, 0.999, 1.4]])
    expected = apply_float_colormap(relevancy.clamp(0, 1)[..., None], colormap="turbo")
    assert torch.equal(relevancy_colors(relevancy), expected)


def test_compositing_colours_only_pixels_above_the_threshold():
    rgb = torch.full((2, 3, 3), 0.25)
    relevancy = torch.tensor([[0.1, 0.5, 0.51], [0.9, 1.0, 0.0]])
    out = composite_relevancy(rgb, relevancy, 0.5)
    above = relevancy > 0.5
    assert torch.equal(out[~above], rgb[~above])
    assert (out[above] - rgb[above]).abs().sum(-1).min() > 0.1


def test_instance_mask_keeps_the_points_nearest_to_the_instance():
    instances = {1: torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]), 2: torch.tensor([[0.3, 0.0, 0.0]])}
    mask = InstanceMask.of(instances, 1, tolerance=0.05)
    queries = torch.tensor([[0.02, 0.0, 0.0], [0.12, 0.01, 0.0], [0.28, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.2, 0.0]])
    assert mask.contains(queries).tolist() == [True, True, False, False, False]


def test_a_request_needs_a_text():
    with pytest.raises(ValueError):
        RelevancyRequest()
    with pytest.raises(ValueError):
        RelevancyRequest(relation_text="standing on")


def test_encoding_crops_odd_sizes_and_reads_back(tmp_path):
    frames = _write_pngs(tmp_path / "frames", 3, (17, 11))
    codec = encode_mp4(frames, tmp_path / "out.mp4", 6.0)
    decoded, fps = _decoded(tmp_path / "out.mp4")
    assert codec in relevancy_video.CODECS and len(decoded) == 3 and fps == pytest.approx(6.0)
    assert decoded[0].shape == (10, 16, 3)
    assert abs(float(decoded[2][5, 3, 0]) - 200) < 30  # the encoded colours are the frames'


def test_a_failed_encoding_keeps_the_frames_and_no_partial_video(tmp_path, monkeypatch):
    frames = _write_pngs(tmp_path / "frames", 2, (16, 16))
    monkeypatch.setattr(relevancy_video, "CODECS", ("no-such-codec",))
    with pytest.raises(UserError, match=r"could not write the video .* 2 frames are kept in .*frames"):
        encode_mp4(frames, tmp_path / "out.mp4", 24.0)
    assert all(path.is_file() for path in frames)
    assert not list(tmp_path.glob("*.mp4")) and not list(tmp_path.glob(".out.mp4*"))


def test_argument_errors(capsys, tmp_path):
    run = ["--load-config", str(tmp_path / "config.yml"), "--output", str(tmp_path / "out.mp4")]
    assert "give a query" in _fails(capsys, *run)
    assert "give one query, not --query and --object" in _fails(capsys, *run, "--query", "chair", "--object", "chair")
    assert "--relation needs --reference" in _fails(capsys, *run, "--relation", "standing on")
    assert "goes with --relation" in _fails(capsys, *run, "--object", "chair", "--reference", "table")
    both = ["--camera-path", str(tmp_path / "p.json"), "--interpolate", "3"]
    assert "not both" in _fails(capsys, *run, "--object", "chair", *both)
    assert "at least 1" in _fails(capsys, *run, "--object", "chair", "--interpolate", "0")
    wrong = ["--load-config", str(tmp_path / "config.yml"), "--output", str(tmp_path / "out.avi"), "--object", "x"]
    assert "must end in .mp4" in _fails(capsys, *wrong)


def test_camera_path_errors(capsys, tmp_path):
    run = ["--load-config", str(tmp_path / "config.yml"), "--output", str(tmp_path / "out.mp4"), "--object", "chair"]
    assert "does not exist" in _fails(capsys, *run, "--camera-path", str(tmp_path / "missing.json"))
    cases = {
        "broken.json": ("{ not json", "is not JSON"),
        "empty.json": (json.dumps({"render_width": 8, "render_height": 8, "camera_path": []}), "has no cameras"),
        "keys.json": (json.dumps({"camera_path": [{"fov": 50}]}), "is malformed"),
        "pose.json": (
            json.dumps({"render_width": 8, "render_height": 8, "camera_path": [{"camera_to_world": [1, 2], "fov": 5}]}),
            "is malformed",
        ),
        "vr.json": (json.dumps({"camera_type": "vr180", "camera_path": [{}]}), "not supported"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        assert message in _fails(capsys, *run, "--camera-path", str(tmp_path / name)), name
    assert not (tmp_path / "out.mp4").exists()


# ------------------------------------------------------------------ slow: the shared trained run
@pytest.fixture(scope="module")
def field(trained_run):
    from relationfield.query import FieldQuery

    return FieldQuery.load(trained_run)


def camera_path_json(cameras, indices: list[int], seconds: float) -> dict:
    """A camera path as nerfstudio's viewer exports it (the keys ``get_path_from_json`` reads)."""
    height, width = int(cameras.height[0]), int(cameras.width[0])
    path = []
    for index in indices:
        pose = torch.cat([cameras.camera_to_worlds[index], torch.tensor([[0.0, 0.0, 0.0, 1.0]])])
        fov = math.degrees(2 * math.atan(height / 2 / float(cameras.fy[index])))  # vertical, as three.js's
        path.append({"camera_to_world": pose.flatten().tolist(), "fov": fov, "aspect": width / height})
    return {
        "camera_type": "perspective",
        "render_height": height,
        "render_width": width,
        "seconds": seconds,
        "camera_path": path,
    }


@pytest.mark.slow
def test_object_query_video_along_interpolated_training_views(trained_run, tmp_path, capsys):
    out = tmp_path / "table.mp4"
    entrypoint(
        ["render", "--load-config", str(trained_run), "--object", "table", "--interpolate", "3"]
        + ["--downscale", DOWNSCALE, "--output", str(out), "--keep-frames"]
    )
    assert f"{out} (" in capsys.readouterr().out
    frames = _frames(tmp_path / "table_frames")
    assert len(frames) == 3 and frames[0].shape == (36, 48, 3)
    for frame in frames:
        assert frame.std() > 10  # a render, not a blank image
    assert not np.array_equal(frames[0], frames[-1])  # the path moves
    decoded, fps = _decoded(out)
    assert len(decoded) == 3 and decoded[0].shape == (36, 48, 3) and fps == pytest.approx(24.0)
    # lossy (and 4:2:0 halves the colour resolution), but the same pictures in the same order
    error = [[np.abs(_pooled(video) - _pooled(png)).mean() for png in frames] for video in decoded]
    assert all(row[i] == min(row) and row[i] < 15 for i, row in enumerate(error)), error


@pytest.mark.slow
def test_camera_path_json_is_followed_and_the_overlay_marks_the_query(trained_run, field, tmp_path, capsys):
    from relationfield.relevancy_video import CameraPath, render_frame

    cameras = field.pipeline.datamanager.train_dataset.cameras
    views = [0, 5]
    path_file = tmp_path / "camera_path.json"
    path_file.write_text(json.dumps(camera_path_json(cameras, views, seconds=1.0)))
    out = tmp_path / "path.mp4"
    entrypoint(
        ["render", "--load-config", str(trained_run), "--object", "table", "--camera-path", str(path_file)]
        + ["--downscale", DOWNSCALE, "--output", str(out), "--keep-frames"]
    )
    capsys.readouterr()
    frames = _frames(tmp_path / "path_frames")
    decoded, fps = _decoded(out)
    assert len(frames) == len(decoded) == 2 and fps == pytest.approx(2.0)  # two frames in the path's one second
    request = RelevancyRequest(object_text="table")
    train_views = CameraPath(cameras[torch.tensor(views)]).rescaled(float(DOWNSCALE))
    for index, written in enumerate(frames):
        expected = render_frame(field, train_views.cameras[index : index + 1], request, 0.5)
        # the path's camera is the training view: the written frame is that view's composited render
        assert (np.abs(written.astype(int) - to_uint8(expected.composited).astype(int)) <= 2).mean() > 0.98
        above = (expected.relevancy > 0.5).numpy()
        assert 0 < above.mean() < 0.95, above.mean()
        plain = to_uint8(expected.rgb).astype(int)
        change = np.abs(written.astype(int) - plain).sum(-1)
        assert change[above].mean() > 60  # turbo over the table ...
        assert np.median(change[~above]) <= 3  # ... and the plain RGB render elsewhere


@pytest.mark.slow
def test_referring_and_relation_queries_write_frames(trained_run, tmp_path, capsys):
    common = ["--load-config", str(trained_run), "--interpolate", "2", "--downscale", DOWNSCALE, "--frames-only"]
    entrypoint(["render", *common, "--query", "chair standing on floor", "--output", str(tmp_path / "ref.mp4")])
    rendered = capsys.readouterr().out
    # the winner is the one `relationfield query` names on the same run (which export the run's cache holds, and
    # so which instance wins, depends on the tests that ran before)
    entrypoint(["query", "--load-config", str(trained_run), "chair standing on floor", "--json", "--top", "1"])
    winner = json.loads(capsys.readouterr().out)["ranked"][0]
    assert f"'chair standing on floor': {winner['label']} #{winner['id']}" in rendered
    referring = _frames(tmp_path / "ref")  # --frames-only: OUT.mp4 names the folder OUT/
    relation_args = ["--relation", "standing on", "--reference", "floor", "--output", str(tmp_path / "r")]
    entrypoint(["render", *common, *relation_args])
    assert "relation 'standing on' to floor #" in capsys.readouterr().out
    relation = _frames(tmp_path / "r")
    assert len(referring) == len(relation) == 2
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.slow
def test_errors_that_need_the_run(trained_run, tmp_path, capsys):
    run = ["--load-config", str(trained_run), "--output", str(tmp_path / "out.mp4"), "--interpolate", "1"]
    assert "empty query" in _fails(capsys, *run, "--query", "the")
    assert "no reference" in _fails(capsys, *run, "--query", "standing on")
    assert "empty query" in _fails(capsys, *run, "--object", "; sofa")
    assert "no object #999" in _fails(capsys, *run, "--relation", "standing on", "--reference", "#999")
    assert not (tmp_path / "out.mp4").exists()
