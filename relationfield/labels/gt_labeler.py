"""Label a synthetic capture from its ground truth (``relationfield label-gt``).

The capture contract (written by ``relationfield synth``)::

    DIR/transforms.json                          frames[*].file_path = image paths
    DIR/ground_truth/scene_graph.json            {"objects": [{"id", "label", "aabb": {"min", "max"}}],
                                                  "relationships": [[subject_id, object_id, predicate], ...]}
    DIR/ground_truth/instances/<image stem>.png  16-bit instance map, pixel = object id, 0 = none

Every object visible in a frame (at least :data:`MIN_MASK_PIXELS` pixels) becomes a mask whose
embedding is the text embedding of its label; a ground-truth relation is labelled in every frame
that shows both its objects, with all its predicates. Optional seeded noise replaces a relation's
predicates with a wrong one (``relation_noise``) or drops it from a frame (``drop_rate``), to test
how training copes with imperfect labels. ``realism`` (``--realism typical|hard``, or any rates of
:class:`~relationfield.labels.realism.RealismConfig`) labels the frames as real preprocessing would instead
(:mod:`relationfield.labels.realistic_labeler`); ``none`` writes the perfect labels above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from relationfield.encoders import OFFLINE_TEXT_ENCODER, TextEncoder, load_text_encoder
from relationfield.errors import UserError
from relationfield.labels.format import default_labels_dir, normalize_frame_name
from relationfield.labels.realism import RealismConfig, realism_config
from relationfield.labels.realistic_labeler import RealisticLabeler
from relationfield.labels.writer import LabelWriter
from relationfield.progress import new_progress
from relationfield.vocab import NONE_PREDICATE

logger = logging.getLogger(__name__)

#: Objects covering fewer pixels than this in a frame are not labelled there.
MIN_MASK_PIXELS = 4

GROUND_TRUTH_DIR = "ground_truth"
SCENE_GRAPH_FILE = "scene_graph.json"
INSTANCES_DIR = "instances"


@dataclass(frozen=True)
class GroundTruth:
    """A synthetic capture's scene graph.

    Attributes:
        labels: object id -> label text.
        relations: (subject id, object id) -> its predicates (unique, in file order), sorted by pair.
    """

    labels: dict[int, str]
    relations: dict[tuple[int, int], tuple[str, ...]]

    @property
    def predicates(self) -> list[str]:
        """All predicates of the scene graph, sorted."""
        return sorted({p for predicates in self.relations.values() for p in predicates})


def _missing_ground_truth(data_dir: Path, what: Path) -> UserError:
    return UserError(
        f"{data_dir} has no ground truth ({what} is missing). `label-gt` needs a synthetic capture "
        "made by `relationfield synth`; label real captures with the preprocessing commands instead."
    )


def read_frame_names(data_dir: Path) -> list[str]:
    """The image paths (``frames[*].file_path``) of ``DATA/transforms.json``, normalised."""
    path = Path(data_dir) / "transforms.json"
    if not path.is_file():
        raise UserError(f"{data_dir} is not a capture: {path} does not exist.")
    try:
        transforms = json.loads(path.read_text(encoding="utf-8"))
        names = [normalize_frame_name(frame["file_path"]) for frame in transforms["frames"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"Cannot read the frames of {path}: {error!r}") from error
    if not names:
        raise UserError(f"{path} lists no frames.")
    if len(set(names)) != len(names):
        raise UserError(f"{path} lists an image more than once.")
    return names


def read_ground_truth(data_dir: Path) -> GroundTruth:
    """Read ``DATA/ground_truth/scene_graph.json``.

    Raises:
        UserError: the file is missing (not a synthetic capture) or malformed.
    """
    path = Path(data_dir) / GROUND_TRUTH_DIR / SCENE_GRAPH_FILE
    if not path.is_file():
        raise _missing_ground_truth(Path(data_dir), path)
    try:
        graph = json.loads(path.read_text(encoding="utf-8"))
        labels = {int(obj["id"]): str(obj["label"]).strip() for obj in graph["objects"]}
        grouped: dict[tuple[int, int], list[str]] = {}
        for subject, obj, predicate in graph.get("relationships", []):
            predicates = grouped.setdefault((int(subject), int(obj)), [])
            if str(predicate).strip() not in predicates:
                predicates.append(str(predicate).strip())
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"The scene graph {path} is malformed: {error!r}") from error
    if 0 in labels:
        raise UserError(f"The scene graph {path} uses object id 0, which instance maps reserve for 'no object'.")
    unknown = sorted({i for pair in grouped for i in pair if i not in labels})
    if unknown:
        raise UserError(f"Relationships in {path} refer to unknown object ids {unknown[:10]}.")
    if any(subject == obj for subject, obj in grouped):
        raise UserError(f"The scene graph {path} relates an object to itself.")
    if any(not label for label in labels.values()) or any("" in p for p in grouped.values()):
        raise UserError(f"The scene graph {path} has an empty object label or predicate.")
    return GroundTruth(labels=labels, relations={pair: tuple(grouped[pair]) for pair in sorted(grouped)})


def read_instance_map(path: Path) -> np.ndarray:
    """A 16-bit instance PNG as an int64 array ``[H, W]`` of object ids (0 = none)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"Cannot read the instance map {path}: {error}") from error
    if array.ndim != 2:
        raise UserError(f"The instance map {path} must be a single-channel 16-bit PNG, got shape {array.shape}.")
    return array.astype(np.int64)


def _check_size(image_path: Path, instance_path: Path, shape: tuple[int, ...]) -> None:
    """Raise :class:`UserError` unless the image exists and has the instance map's size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image_path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError) as error:
        raise UserError(f"Cannot read the image {image_path}: {error}") from error
    if (height, width) != tuple(shape):
        raise UserError(
            f"The instance map {instance_path} is {shape[1]}x{shape[0]} but its image {image_path} is "
            f"{width}x{height}; regenerate the capture."
        )


def _noisy_relations(
    relations: list[tuple[int, int, tuple[str, ...]]],
    predicates: Sequence[str],
    rng: np.random.Generator,
    relation_noise: float,
    drop_rate: float,
) -> list[tuple[int, int, tuple[str, ...]]]:
    """Apply drop and wrong-predicate noise to a frame's relations (two draws per relation)."""
    noisy = []
    for subject, obj, true_predicates in relations:
        drop, corrupt = rng.random(2)
        if drop < drop_rate:
            continue
        if corrupt < relation_noise:
            wrong = [p for p in predicates if p not in true_predicates]
            if wrong:
                true_predicates = (wrong[int(rng.integers(len(wrong)))],)
        noisy.append((subject, obj, true_predicates))
    return noisy


def check_label_gt_options(relation_noise: float, drop_rate: float, seed: int, *, cli: bool = False) -> None:
    """Check the options of ``label-gt`` (the one definition the CLI and :func:`label_from_ground_truth` share).

    Args:
        relation_noise: must be a probability (0 to 1).
        drop_rate: must be a probability (0 to 1).
        seed: must be a non-negative integer.
        cli: word the message as the command line always has (``--relation-noise must be a probability in
            [0, 1], ...``); the seed is then left to :func:`label_from_ground_truth`, as before.

    Raises:
        UserError: an option is out of range.
    """
    for option, value in (("relation_noise", relation_noise), ("drop_rate", drop_rate)):
        if 0.0 <= float(value) <= 1.0:
            continue
        if cli:
            raise UserError(f"--{option.replace('_', '-')} must be a probability in [0, 1], got {value}")
        raise UserError(f"{option} must be between 0 and 1, got {value}.")
    if not cli and int(seed) < 0:
        raise UserError(f"seed must be a non-negative integer, got {seed}.")


def label_from_ground_truth(
    data_dir: Path,
    *,
    labels_dir: Path | None = None,
    text_encoder: str = OFFLINE_TEXT_ENCODER,
    relation_noise: float = 0.0,
    drop_rate: float = 0.0,
    seed: int = 0,
    realism: str | RealismConfig = "none",
    progress: bool = True,
) -> Path:
    """Write a label store for a synthetic capture from its ground truth.

    Args:
        data_dir: the synthetic capture.
        labels_dir: where to write the store (default ``DATA/relationfield``).
        text_encoder: encoder of labels and predicates (see :mod:`relationfield.encoders`).
        relation_noise: probability that a labelled relation gets one wrong predicate instead of
            its true ones (per frame).
        drop_rate: probability that a relation is left out of a frame.
        seed: seed of the noise (the same seed gives the same labels).
        realism: a ``--realism`` level (``none``, ``typical``, ``hard``) or the rates of the realistic
            label model; ``none`` (all rates 0) gives the perfect labels.
        progress: show a progress bar.

    Returns:
        The labels directory.

    Raises:
        UserError: not a synthetic capture, unreadable ground truth, or bad options.
    """
    data_dir = Path(data_dir)
    check_label_gt_options(relation_noise, drop_rate, seed)
    rates = realism_config(realism) if isinstance(realism, str) else realism
    rates.check()
    names = read_frame_names(data_dir)
    truth = read_ground_truth(data_dir)
    paths = instance_paths(data_dir, names)
    encoder = load_text_encoder(text_encoder)
    options = _recorded_options(encoder, relation_noise, drop_rate, int(seed), realism, rates)
    labels_dir = Path(labels_dir) if labels_dir is not None else default_labels_dir(data_dir)
    writer = _new_writer(labels_dir, encoder, options)
    labeler = _start_labeler(writer, truth, encoder, rates, relation_noise, drop_rate, int(seed))
    with new_progress(progress, transient=True) as bar:
        task = bar.add_task("Labelling frames from ground truth", total=len(names))
        for index, (name, instance_path) in enumerate(zip(names, paths)):
            instance_map = read_instance_map(instance_path)
            _check_size(data_dir / name, instance_path, instance_map.shape)
            labeler.label(index, name, instance_map)
            bar.advance(task)
    if isinstance(labeler, RealisticLabeler):
        labeler.write(writer, encoder)
    if labeler.unknown_ids:
        logger.warning(
            "Instance maps contain object ids that the scene graph does not list (left unlabelled): %s",
            sorted(labeler.unknown_ids)[:20],
        )
    return writer.finalize(data_dir, names)


def _recorded_options(
    encoder: TextEncoder,
    relation_noise: float,
    drop_rate: float,
    seed: int,
    realism: str | RealismConfig,
    rates: RealismConfig,
) -> dict[str, Any]:
    """The options the manifest records (the realistic model's rates only when they are not clean)."""
    options: dict[str, Any] = {
        "text_encoder": encoder.name,
        "relation_noise": float(relation_noise),
        "drop_rate": float(drop_rate),
        "seed": seed,
        "min_mask_pixels": MIN_MASK_PIXELS,
    }
    if not rates.is_clean:
        options["realism"] = {"level": realism if isinstance(realism, str) else "custom", **rates.options()}
    return options


def _new_writer(labels_dir: Path, encoder: TextEncoder, options: dict[str, Any]) -> LabelWriter:
    """The writer of ``label-gt``'s store: text embeddings for masks and relations alike."""
    return LabelWriter(
        labels_dir,
        semantic_encoder=encoder.name,
        semantic_dim=encoder.dim,
        relation_encoder=encoder.name,
        relation_dim=encoder.dim,
        producer="label-gt",
        options=options,
    )


def _start_labeler(
    writer: LabelWriter,
    truth: GroundTruth,
    encoder: TextEncoder,
    rates: RealismConfig,
    relation_noise: float,
    drop_rate: float,
    seed: int,
) -> _FrameLabeler | RealisticLabeler:
    """The perfect labeler for clean rates, else the realistic one."""
    if rates.is_clean:
        return _FrameLabeler.start(writer, truth, encoder, relation_noise, drop_rate, seed)
    return RealisticLabeler.start(
        truth.labels,
        truth.relations,
        rates,
        seed,
        min_mask_pixels=MIN_MASK_PIXELS,
        relation_noise=relation_noise,
        drop_rate=drop_rate,
    )


def instance_paths(data_dir: Path, names: list[str]) -> list[Path]:
    """The instance map of each frame (``ground_truth/instances/<image stem>.png``); all must exist."""
    instances_dir = data_dir / GROUND_TRUTH_DIR / INSTANCES_DIR
    if not instances_dir.is_dir():
        raise _missing_ground_truth(data_dir, instances_dir)
    paths = [instances_dir / f"{PurePosixPath(name).stem}.png" for name in names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise UserError(f"{len(missing)} instance map(s) are missing, e.g. {missing[0]}; regenerate the capture.")
    return paths


@dataclass
class _FrameLabeler:
    """Writes the labels of one frame after another from the ground truth."""

    writer: LabelWriter
    """The store being written (its predicate table is set)."""
    truth: GroundTruth
    """The capture's scene graph."""
    table: dict[str, np.ndarray]
    """Embedding of every object label and predicate text (and of "none")."""
    dim: int
    """The embedding dimension."""
    relation_noise: float
    """Probability of a wrong predicate."""
    drop_rate: float
    """Probability of dropping a relation from a frame."""
    seed: int
    """Seed of the noise; frame ``i`` draws from ``default_rng([seed, i])``."""
    unknown_ids: set[int] = field(default_factory=set)
    """Instance ids seen in the maps that the scene graph does not list."""

    @classmethod
    def start(
        cls,
        writer: LabelWriter,
        truth: GroundTruth,
        encoder: TextEncoder,
        relation_noise: float,
        drop_rate: float,
        seed: int,
    ) -> _FrameLabeler:
        """Embed the scene graph's texts and set the writer's predicate table."""
        predicates = truth.predicates
        object_texts = sorted({truth.labels[i] for i in sorted(truth.labels)})
        texts = list(dict.fromkeys([*object_texts, *predicates, NONE_PREDICATE]))
        table = encoder.encode_table(texts)
        writer.set_predicate_table(predicates, table)
        return cls(writer, truth, table, encoder.dim, relation_noise, drop_rate, seed)

    def label(self, index: int, name: str, instance_map: np.ndarray) -> None:
        """Write frame ``index`` (image ``name``): its visible objects as masks and their relations."""
        truth = self.truth
        counts = np.bincount(instance_map.reshape(-1))
        visible = [i for i in sorted(truth.labels) if i < len(counts) and counts[i] >= MIN_MASK_PIXELS]
        self.unknown_ids.update(int(i) for i in np.flatnonzero(counts[1:]) + 1 if int(i) not in truth.labels)
        lut = np.zeros(max(len(counts), 1), dtype=np.int64)
        lut[visible] = np.arange(1, len(visible) + 1)
        local = {object_id: k for k, object_id in enumerate(visible, start=1)}
        relations = [
            (local[subject], local[obj], frame_predicates)
            for (subject, obj), frame_predicates in truth.relations.items()
            if subject in local and obj in local
        ]
        rng = np.random.default_rng([self.seed, index])
        relations = _noisy_relations(relations, truth.predicates, rng, self.relation_noise, self.drop_rate)
        labels = [truth.labels[i] for i in visible]
        self.writer.write_frame(
            name,
            lut[instance_map],
            np.stack([self.table[label] for label in labels]) if labels else np.zeros((0, self.dim), np.float32),
            relations,
            mask_labels=labels,
        )
