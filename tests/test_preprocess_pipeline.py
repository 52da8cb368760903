"""End to end, offline: synth capture -> masks (ground-truth stub behind the MaskGenerator interface) ->
relations (the real openai client against a local fake server answering from ground truth) -> embed
(offline MiniLM) -> a few training iterations on the label store that embed wrote."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from fake_openai import FakeOpenAI, answer_json, chat_reply, request_image, tags_from_prompt
from PIL import Image
from preprocess_stubs import GroundTruthMaskGenerator

from relationfield.encoders import OFFLINE_TEXT_ENCODER
from relationfield.labels.store import LabelStore
from relationfield.preprocess.embed import EmbedConfig, run_embed
from relationfield.preprocess.masks import MasksConfig, run_masks
from relationfield.preprocess.relations import RelationsConfig, run_relations
from relationfield.preprocess.workspace import OVERLAYS_DIR, default_workspace, masks_path


class GroundTruthResponder:
    """Answers a Set-of-Mark request for a synthetic capture from its ground truth.

    The frame is recognised by comparing the image sent with the overlays the relations stage kept;
    each tag is the ground-truth object covering most of its mask.
    """

    def __init__(self, capture: Path, generator: GroundTruthMaskGenerator) -> None:
        self.capture = capture
        self.generator = generator
        truth = json.loads((capture / "ground_truth" / "scene_graph.json").read_text())
        self.labels = {obj["id"]: obj["label"] for obj in truth["objects"]}
        self.relations: dict[tuple, list[str]] = defaultdict(list)
        for subject, obj, predicate in truth["relationships"]:
            self.relations[(subject, obj)].append(predicate)
        self.answered: list[str] = []

    def _frame(self, sent: Image.Image) -> str:
        workspace = default_workspace(self.capture)
        sent_pixels = np.asarray(sent.convert("RGB"), dtype=np.float32)
        best, best_error = "", np.inf
        for overlay in sorted((workspace / OVERLAYS_DIR).glob("*.png")):
            with Image.open(overlay) as image:
                pixels = np.asarray(image.convert("RGB").resize(sent.size), dtype=np.float32)
            error = float(((pixels - sent_pixels) ** 2).mean())
            if error < best_error:
                best, best_error = overlay.stem, error
        return best

    def __call__(self, request_json):
        stem = self._frame(request_image(request_json))
        self.answered.append(stem)
        name = f"images/{stem}.png"
        segments = np.load(masks_path(default_workspace(self.capture), name))["segments"].astype(np.int64)
        instances = self.generator.instance_map(name)
        tag_object = {}
        for tag in tags_from_prompt(request_json):
            ids = instances[segments == tag]
            ids = ids[ids > 0]
            if len(ids):
                tag_object[tag] = int(np.bincount(ids).argmax())
        by_object = {obj: tag for tag, obj in tag_object.items()}
        relations = [
            (by_object[s], by_object[o], predicates)
            for (s, o), predicates in sorted(self.relations.items())
            if s in by_object and o in by_object
        ]
        names = {tag: self.labels[obj] for tag, obj in tag_object.items()}
        return chat_reply(answer_json(names, relations), prompt_tokens=700, completion_tokens=300)


@pytest.mark.slow
def test_preprocessing_pipeline_writes_a_store_that_trains(tmp_path, monkeypatch):
    from conftest import lite_config
    from nerfstudio.scripts.train import main as train_main

    from relationfield.synth import generate_capture

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    capture = tmp_path / "capture"
    generate_capture(capture, seed=1, num_frames=6, resolution=(96, 72), progress=False)
    generator = GroundTruthMaskGenerator(capture)

    masks = run_masks(MasksConfig(data=capture, max_frames=5), generator=generator, progress=False)
    assert masks["segmented"] == 5 and not masks["failed"]

    responder = GroundTruthResponder(capture, generator)
    with FakeOpenAI(responder=responder) as server:
        relations = run_relations(
            RelationsConfig(data=capture, base_url=server.url, model="gpt-4o", concurrency=2, backoff=0.01),
            progress=False,
        )
        requests = server.chat_requests
    assert relations["done"] == 5 and not relations["failed"]
    assert sorted(responder.answered) == sorted(set(responder.answered)), "a frame was asked twice"
    assert relations["usage"] == {"prompt_tokens": 5 * 700, "completion_tokens": 5 * 300}
    assert all({k.lower(): v for k, v in r.headers.items()}.get("authorization") == "Bearer EMPTY" for r in requests)

    summary = run_embed(
        EmbedConfig(data=capture, text_encoder=OFFLINE_TEXT_ENCODER, semantic_source="text"), progress=False
    )
    labels_dir = Path(summary["labels_dir"])
    store = LabelStore.open(labels_dir, data_dir=capture)
    assert store.num_frames == 5
    assert store.num_relations > 0
    assert {"standing on", "same as"} & set(store.predicates)

    config = lite_config(capture, labels_dir, tmp_path / "runs", 3)
    train_main(config)
    assert (config.get_base_dir() / "nerfstudio_models" / "step-000000002.ckpt").is_file()
