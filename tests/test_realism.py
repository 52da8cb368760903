"""The realistic label model of ``label-gt --realism``: each component's measured rate, the wording table,
seeded determinism, masks consistent with the stored segment maps, and ``none`` as the perfect labels."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from relationfield.errors import UserError
from relationfield.labels.format import FRAMES_DIR, PREDICATES_FILE
from relationfield.labels.gt_labeler import label_from_ground_truth, read_ground_truth, read_instance_map
from relationfield.labels.realism import PRESETS, RATE_NAMES, RealismConfig, realism_config
from relationfield.labels.realism_masks import (
    MULTI_PART_LABELS,
    STRUCTURAL_LABELS,
    corrupt_masks,
    split_in_two,
    supports_of,
)
from relationfield.labels.realism_relations import (
    PLAUSIBLE_CONFUSIONS,
    RelationEvents,
    SceneRelations,
    pair_log_weights,
    state_relations,
)
from relationfield.labels.realistic_labeler import STEPS, RealisticLabeler
from relationfield.labels.segments import segments_from_masks
from relationfield.labels.store import LabelStore
from relationfield.labels.wording import PARAPHRASES_FILE, choose_wording, load_wording_table
from relationfield.vocab import predicate_vocab

SEEDS = range(4)


def frames(capture: Path) -> list[tuple[int, np.ndarray]]:
    """(index, instance map) of every frame of a capture, in ``transforms.json`` order."""
    names = [f["file_path"] for f in json.loads((capture / "transforms.json").read_text())["frames"]]
    maps = capture / "ground_truth" / "instances"
    return [(i, read_instance_map(maps / f"{Path(name).stem}.png")) for i, name in enumerate(names)]


def rngs(seed: int, index: int) -> dict[str, np.random.Generator]:
    return {step: np.random.default_rng([seed, index, 7, k]) for k, step in enumerate(STEPS)}


def visible(instance_map: np.ndarray, labels: dict[int, str]) -> list[int]:
    counts = np.bincount(instance_map.reshape(-1))
    return [i for i in sorted(labels) if i < len(counts) and counts[i] >= 4]


@pytest.fixture(scope="module")
def scene(synth_capture: Path):
    truth = read_ground_truth(synth_capture)
    return truth, frames(synth_capture)


def mask_runs(scene, config: RealismConfig):
    """Every (frame, seed) run of the mask corruptions: (seed, frame index, instance map, FrameMasks)."""
    truth, maps = scene
    supports = supports_of(truth.relations, truth.labels)
    for seed in SEEDS:
        for index, instance_map in maps:
            ids = visible(instance_map, truth.labels)
            yield (
                seed,
                index,
                instance_map,
                corrupt_masks(instance_map, ids, truth.labels, supports, config, rngs(seed, index)),
            )


def relation_runs(scene, config: RealismConfig, *, clean_masks: bool = True):
    """Every (frame, seed) run of the relation steps on clean (or ``config``'s) masks."""
    truth, maps = scene
    relations = SceneRelations(truth.relations, predicate_vocab())
    mask_config = RealismConfig() if clean_masks else config
    for seed, index, _, frame in mask_runs(scene, mask_config):
        statements, events = state_relations(frame, relations, config, rngs(100 + seed, index))
        yield frame, statements, events


def total(runs) -> RelationEvents:
    events = RelationEvents()
    for run in runs:
        events.add(run[-1])
    return events


# --------------------------------------------------------------------------- presets and options


def test_presets_and_overrides():
    assert PRESETS["none"].is_clean and not PRESETS["typical"].is_clean and not PRESETS["hard"].is_clean
    for name in RATE_NAMES:
        if name.endswith("_rate"):
            assert getattr(PRESETS["hard"], name) >= getattr(PRESETS["typical"], name) > 0, name
    assert PRESETS["typical"].max_masks == PRESETS["hard"].max_masks == 40  # relationfield masks' default
    custom = realism_config("typical", split_rate=0.0, flip_rate=None)
    assert custom == replace(PRESETS["typical"], split_rate=0.0)
    assert not realism_config("none", split_rate=0.2).is_clean
    with pytest.raises(UserError, match="--split-rate must be a probability"):
        realism_config("typical", split_rate=1.5)
    with pytest.raises(UserError, match="--realism must be one of"):
        realism_config("bogus")
    with pytest.raises(UserError, match="--boundary-pixels"):
        realism_config("hard", boundary_pixels=0)
    with pytest.raises(UserError, match="unknown realism rate"):
        realism_config("hard", nonsense=1)


# --------------------------------------------------------------------------- the wording table


def test_paraphrase_table_covers_every_predicate_and_synth_label():
    from relationfield.synth.layout import LAYOUTS, build_scene

    table = load_wording_table()
    assert set(table.predicates) == set(predicate_vocab())  # every 3DSSG predicate but "none"
    assert "none" not in table.predicates
    for predicate, wordings in table.predicates.items():
        assert wordings[0] == predicate and len(wordings) >= 4 and len(set(wordings)) == len(wordings)
    every = [w for wordings in table.predicates.values() for w in wordings]
    assert len(every) == len(set(every))  # a wording names one predicate
    assert {"on top of", "resting on", "sitting on", "standing on"} <= set(table.predicate_wordings("standing on"))
    assert table.canonical_predicate("larger than") == "bigger than" and table.canonical_predicate("xyz") == "xyz"
    labels = {
        o.label
        for layout in LAYOUTS
        for seed in range(6)
        for o in build_scene(layout, np.random.default_rng(seed)).objects
    }
    assert labels <= set(table.objects), labels - set(table.objects)
    assert MULTI_PART_LABELS <= labels and STRUCTURAL_LABELS <= labels
    for label in labels:
        assert len(table.object_names(label)) >= 2
    assert "couch" in table.object_names("sofa") and "mug" in table.object_names("cup")


def test_malformed_wording_table_is_a_user_error(tmp_path: Path):
    data = json.loads(PARAPHRASES_FILE.read_text())
    data["predicates"]["lying on"].append("on top of")  # already a wording of "standing on"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="words both"):
        load_wording_table(path)
    data["predicates"]["lying on"] = ["laid on", "lying on"]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="starts with 'lying on'"):
        load_wording_table(path)


def test_choose_wording_rate():
    rng = np.random.default_rng(0)
    wordings = ("standing on", "on top of", "resting on")
    drawn = [choose_wording(wordings, 0.3, rng) for _ in range(4000)]
    assert set(drawn) == set(wordings)
    assert abs(np.mean([w != "standing on" for w in drawn]) - 0.3) < 0.03
    assert all(choose_wording(wordings, 0.0, rng) == "standing on" for _ in range(100))


# --------------------------------------------------------------------------- masks


def test_part_split_cuts_a_mask_in_two():
    pixels = np.zeros((20, 30), dtype=bool)
    pixels[4:16, 3:27] = True
    for seed in range(10):
        first, second = split_in_two(pixels, np.random.default_rng(seed))
        assert not (first & second).any() and np.array_equal(first | second, pixels)
        assert min(first.sum(), second.sum()) >= 0.3 * pixels.sum()


def test_merge_joins_a_small_object_to_its_support_only():
    labels = {1: "floor", 2: "table", 3: "cup", 4: "chair"}
    relations = {(2, 1): ("standing on",), (3, 2): ("standing on", "supported by"), (4, 1): ("standing on",)}
    instance_map = np.ones((20, 20), dtype=np.int64)
    instance_map[2:10, 2:18] = 2
    instance_map[4:7, 8:11] = 3
    instance_map[12:19, 2:8] = 4
    supports = supports_of(relations, labels)
    assert supports == {3: 2}  # the floor is structural: nothing merges into it
    config = RealismConfig(merge_rate=1.0)
    frame = corrupt_masks(instance_map, [1, 2, 3, 4], labels, supports, config, rngs(0, 0))
    assert [m.object_id for m in frame.masks] == [1, 2, 4]
    table = frame.masks[1]
    assert table.members == (2, 3) and np.array_equal(table.pixels, np.isin(instance_map, [2, 3]))
    assert frame.events.merge_candidates == frame.events.merged == 1


def test_tiny_masks_and_max_masks():
    labels = {i: "box" for i in range(1, 8)}
    instance_map = np.zeros((20, 20), dtype=np.int64)
    for i in range(1, 8):
        instance_map[i * 2, : i + 3] = i  # areas 4..10
    frame = corrupt_masks(instance_map, list(range(1, 8)), labels, {}, RealismConfig(max_masks=3), rngs(0, 0))
    assert [m.object_id for m in frame.masks] == [5, 6, 7] and frame.events.capped == 4
    config = RealismConfig(tiny_area_fraction=6.5 / 400, tiny_drop_rate=1.0)
    frame = corrupt_masks(instance_map, list(range(1, 8)), labels, {}, config, rngs(0, 0))
    assert [m.object_id for m in frame.masks] == [4, 5, 6, 7] and frame.events.tiny_dropped == 3


@pytest.mark.parametrize(
    ("rate_name", "events"),
    [
        ("split_rate", ("split_candidates", "split")),
        ("merge_rate", ("merge_candidates", "merged")),
        ("boundary_rate", ("boundary_candidates", "boundary_edited")),
        ("tiny_drop_rate", ("tiny_candidates", "tiny_dropped")),
    ],
)
@pytest.mark.parametrize("rate", [0.3, 0.7])
def test_mask_rates_are_close_to_what_was_asked(scene, rate_name, events, rate):
    config = replace(RealismConfig(), **{rate_name: rate, "tiny_area_fraction": 0.01})
    candidates = done = 0
    for *_, frame in mask_runs(scene, config):
        candidates += getattr(frame.events, events[0])
        done += getattr(frame.events, events[1])
    assert candidates >= 60, candidates
    assert abs(done / candidates - rate) < 0.1, (done, candidates)


def test_corrupted_masks_stay_consistent_with_their_segment_map(scene):
    truth, _ = scene
    config = replace(PRESETS["hard"], split_rate=0.5, merge_rate=0.5, boundary_pixels=2, max_masks=6)
    kinds = {"split": 0, "merged": 0, "grown": 0, "shrunk": 0}
    for _, _, instance_map, frame in mask_runs(scene, config):
        assert len(frame.masks) <= 6
        stack = np.stack([m.pixels for m in frame.masks]) if frame.masks else np.zeros((0, *instance_map.shape), bool)
        segments, kept = segments_from_masks(stack)
        assert np.array_equal(segments, frame.segments) and kept.tolist() == list(range(len(frame.masks)))
        assert np.array_equal(frame.areas, np.bincount(segments.reshape(-1), minlength=len(kept) + 1)[1:])
        for k, mask in enumerate(frame.masks, start=1):
            assert not (frame.segments == k)[~mask.pixels].any()  # a segment lies inside its mask
            members = np.isin(instance_map, mask.members)
            reach = ndimage.binary_dilation(members, iterations=2) if mask.boundary > 0 else members
            assert not (mask.pixels & ~reach).any()  # only its objects' pixels, grown by at most 2
            assert mask.object_id in mask.members and (
                mask.part == 0 or truth.labels[mask.object_id] in MULTI_PART_LABELS
            )
            kinds["split"] += mask.part == 1
            kinds["merged"] += len(mask.members) > 1
            kinds["grown"] += mask.boundary > 0
            kinds["shrunk"] += mask.boundary < 0
    assert all(count > 0 for count in kinds.values()), kinds


# --------------------------------------------------------------------------- relations


def test_relations_per_frame_limit_and_preference(scene):
    truth, _ = scene
    limits, ranks = [], []
    for frame, statements, events in relation_runs(scene, RealismConfig(relations_per_frame=4.0)):
        if not events.candidates:
            continue
        limits.append(events.limit)
        assert len(statements) == min(events.limit, events.candidates)
        weights = pair_log_weights(frame)
        objects = [m.object_id for m in frame.masks]
        candidates = sorted(
            weights[a, b]
            for a in range(len(objects))
            for b in range(len(objects))
            if (objects[a], objects[b]) in truth.relations
        )
        if len(candidates) > events.limit:
            for s in statements:
                ranks.append(np.searchsorted(candidates, weights[s.subject, s.object]) / (len(candidates) - 1))
    assert abs(np.mean(limits) - 4.0) < 0.5 and min(limits) >= 1
    assert np.mean(ranks) > 0.65  # salient, close pairs first (0.5 for a uniform choice)


def test_single_predicate_rate(scene):
    events = total(relation_runs(scene, RealismConfig(single_predicate_rate=0.8)))
    assert events.multi > 100 and abs(events.reduced / events.multi - 0.8) < 0.06
    for _, statements, _ in relation_runs(scene, RealismConfig(single_predicate_rate=1.0)):
        assert all(len(s.predicates) == 1 and s.predicates[0] in s.true_predicates for s in statements)


def test_confusions_are_wrong_and_mostly_plausible(scene):
    config = RealismConfig(confusion_rate=0.3, plausible_confusion_share=0.8)
    runs = list(relation_runs(scene, config))
    events = total(runs)
    assert abs(events.confused / events.confusion_draws - 0.3) < 0.05
    assert abs(events.plausible / events.plausible_possible - 0.8) < 0.08
    vocabulary = set(predicate_vocab())
    for _, statements, _ in runs:
        for s in statements:
            if s.confused:
                assert len(s.predicates) == 1 and s.predicates[0] not in s.true_predicates
                assert s.predicates[0] in vocabulary
            else:
                assert s.predicates == s.true_predicates
    confused = [s for _, statements, _ in runs for s in statements if s.confused]
    plausible = [
        s for s in confused if any(s.predicates[0] in PLAUSIBLE_CONFUSIONS.get(p, ()) for p in s.true_predicates)
    ]
    assert len(plausible) >= 0.6 * len(confused)


def test_hallucinations_are_between_unrelated_pairs(scene):
    truth, _ = scene
    runs = list(relation_runs(scene, RealismConfig(hallucination_rate=0.2)))
    events = total(runs)
    assert events.hallucination_draws > 200 and abs(events.hallucinated / events.hallucination_draws - 0.2) < 0.05
    for frame, statements, _ in runs:
        pairs = [(s.subject, s.object) for s in statements]
        assert len(pairs) == len(set(pairs))
        for s in statements:
            a, b = frame.masks[s.subject].object_id, frame.masks[s.object].object_id
            related = (a, b) in truth.relations or (b, a) in truth.relations
            assert related != s.hallucinated and a != b


def test_flips_reverse_true_relations(scene):
    truth, _ = scene
    runs = list(relation_runs(scene, RealismConfig(flip_rate=0.25)))
    events = total(runs)
    assert abs(events.flipped / events.flip_draws - 0.25) < 0.03 and 0 < events.flip_merged < events.flipped
    stated = sum(len(statements) for _, statements, _ in runs)
    assert stated == events.candidates - events.flip_merged
    flipped = 0
    for frame, statements, _ in runs:
        assert len({(s.subject, s.object) for s in statements}) == len(statements)
        for s in statements:
            pair = (frame.masks[s.subject].object_id, frame.masks[s.object].object_id)
            assert truth.relations[pair[::-1] if s.flipped else pair] == s.true_predicates
            assert set(s.true_predicates if s.flipped else ()) <= set(s.predicates)
            flipped += s.flipped
            if not s.flipped and set(s.predicates) != set(s.true_predicates):  # a flipped reverse joined it
                reverse = truth.relations[pair[::-1]]
                assert set(s.predicates) == set(s.true_predicates) | set(reverse)
    assert flipped == events.flipped - events.flip_merged


def test_split_objects_keep_their_relations_on_one_part(scene):
    truth, _ = scene
    config = RealismConfig(split_rate=1.0)
    for frame, statements, events in relation_runs(scene, config, clean_masks=False):
        objects = [m.object_id for m in frame.masks]
        expected = sum(1 for s, o in truth.relations if s in objects and o in objects)
        assert events.candidates == len(statements) == expected


# --------------------------------------------------------------------------- the store


def store_files(labels_dir: Path) -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted((labels_dir / FRAMES_DIR).iterdir())}
    files[PREDICATES_FILE] = (labels_dir / PREDICATES_FILE).read_bytes()
    return files


def test_realism_none_is_the_perfect_labels(synth_capture: Path, tmp_path: Path):
    default = label_from_ground_truth(synth_capture, labels_dir=tmp_path / "default", progress=False)
    named = label_from_ground_truth(synth_capture, labels_dir=tmp_path / "none", realism="none", progress=False)
    rates = label_from_ground_truth(synth_capture, labels_dir=tmp_path / "r", realism=RealismConfig(), progress=False)
    assert store_files(default) == store_files(named) == store_files(rates)
    assert "realism" not in json.loads((named / "manifest.json").read_text())["producer"]["options"]
    # the perfect labels: masks are the visible objects, every relation of theirs with all its predicates
    truth = read_ground_truth(synth_capture)
    store = LabelStore.open(named, data_dir=synth_capture)
    assert store.predicates == truth.predicates
    for index, instance_map in frames(synth_capture):
        ids = visible(instance_map, truth.labels)
        lut = np.zeros(instance_map.max() + 1, dtype=np.int64)
        lut[ids] = np.arange(1, len(ids) + 1)
        assert np.array_equal(store.segments[index].numpy(), lut[instance_map])
    expected = sum(
        len([1 for s, o in truth.relations if s in ids and o in ids])
        for ids in (visible(m, truth.labels) for _, m in frames(synth_capture))
    )
    assert store.num_relations == expected


def test_realistic_store_is_seeded_and_consistent(synth_capture: Path, tmp_path: Path):
    def run(name: str, seed: int) -> Path:
        return label_from_ground_truth(
            synth_capture, labels_dir=tmp_path / name, realism="typical", seed=seed, progress=False
        )

    first, again, other = run("a", 1), run("b", 1), run("c", 2)
    assert store_files(first) == store_files(again)
    assert store_files(first) != store_files(other)
    options = json.loads((first / "manifest.json").read_text())["producer"]["options"]
    assert options["realism"]["level"] == "typical" and options["realism"]["split_rate"] == 0.15

    truth = read_ground_truth(synth_capture)
    table = load_wording_table()
    store = LabelStore.open(first, data_dir=synth_capture)
    labeler = RealisticLabeler.start(truth.labels, truth.relations, PRESETS["typical"], 1, min_mask_pixels=4)
    used = set()
    for index, instance_map in frames(synth_capture):
        plan = labeler.plan(index, store.frame_names[index], instance_map)
        segments = store.segments[index].numpy()
        assert np.array_equal(segments, plan.segments)
        start, stop = int(store.mask_offsets[index]), int(store.mask_offsets[index + 1])
        assert store.mask_labels[start:stop] == plan.names and stop - start <= 40
        for k, (object_id, name) in enumerate(zip(plan.objects, plan.names), start=1):
            assert name in table.object_names(truth.labels[object_id])
            assert (segments == k).any()
        assert len(plan.relations) <= plan.relation_events.limit or not plan.relations
        used |= {w for _, _, wordings in plan.relations for w in wordings}
    assert store.predicates == sorted(used)
    assert any(w not in truth.predicates for w in used)  # paraphrased
    assert {table.canonical_predicate(w) for w in used} <= set(predicate_vocab())


def test_wording_rates_in_the_plans(synth_capture: Path):
    truth = read_ground_truth(synth_capture)
    config = replace(RealismConfig(), paraphrase_rate=0.6, synonym_rate=0.3)
    named = synonyms = worded = paraphrased = 0
    for seed in SEEDS:
        labeler = RealisticLabeler.start(truth.labels, truth.relations, config, seed, min_mask_pixels=4)
        for index, instance_map in frames(synth_capture):
            plan = labeler.plan(index, f"images/frame_{index:05d}.png", instance_map)
            named += len(plan.names)
            synonyms += sum(n != truth.labels[o] for n, o in zip(plan.names, plan.objects))
            for (_, _, wordings), statement in zip(plan.relations, plan.statements):
                worded += len(wordings)
                paraphrased += sum(w not in statement.predicates for w in wordings)
    assert abs(synonyms / named - 0.3) < 0.05
    assert abs(paraphrased / worded - 0.6) < 0.03


def test_cli_realism_flags(synth_capture: Path, tmp_path: Path):
    from relationfield.cli import entrypoint

    out = tmp_path / "labels"
    entrypoint(
        ["label-gt", "--data", str(synth_capture), "--labels-dir", str(out), "--realism", "hard", "--max-masks", "5"]
    )
    options = json.loads((out / "manifest.json").read_text())["producer"]["options"]["realism"]
    assert options["max_masks"] == 5 and options["split_rate"] == PRESETS["hard"].split_rate
    store = LabelStore.open(out, data_dir=synth_capture)
    assert int((store.mask_offsets[1:] - store.mask_offsets[:-1]).max()) <= 5
    with pytest.raises(SystemExit):
        entrypoint(["label-gt", "--data", str(synth_capture), "--realism", "typical", "--flip-rate", "2"])
