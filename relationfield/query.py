"""Object, relation and predicate queries against a trained RelationField run.

This is the one code path behind ``relationfield query``, ``relationfield export`` and the viewer.
Queries use the text encoders recorded in the run's label-store manifest, so a run trained with
MiniLM labels is queried with MiniLM and one trained with jina/CLIP with those.

Relevancy follows LERF: for a positive text and each negative text, the softmax of the two cosine
similarities (temperature ``RELEVANCY_TEMPERATURE``) gives the positive's share; the relevancy is the
smallest share over the negatives, in [0, 1]. Canonical negatives are added to the user's (phrases after
";" in a query become extra negatives).

Objects (node id -> surface points) are ranked by their mean relevancy (:func:`rank_objects`); an object
reference of a relation query is a fixed sample of its points (:func:`sample_reference`), in the CLI and the
viewer alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor

from relationfield import encoders
from relationfield.compat import allow_nerfstudio_checkpoints
from relationfield.errors import UserError
from relationfield.referring import ReferringAnswer, ReferringConfig, ReferringQuery, rank_referring
from relationfield.vocab import NONE_PREDICATE

OBJECT_NEGATIVES: tuple[str, ...] = ("object", "things", "stuff", "texture")
RELATION_NEGATIVES: tuple[str, ...] = (NONE_PREDICATE, "next to", "and")
RELEVANCY_TEMPERATURE = 0.1
RELATIONFIELD_METHODS = ("relationfield", "relationfield-lite")
REFERENCE_SAMPLES = 16
"""Points of an object reference used as relation query positions z (their relation features are averaged)."""
CANDIDATE_SAMPLES = 256
"""Points of a candidate at which a referring query's relation relevancy is averaged."""
HEADS = ("semantic_head", "instance_head", "relation_head", "normalize_positions", "label_spec")
"""What a pipeline's model needs for queries (a RelationField model has them all)."""


@dataclass(frozen=True)
class ParsedQuery:
    positive: str
    negatives: tuple[str, ...]


def parse_query(text: str, canonical: Sequence[str]) -> ParsedQuery:
    """``"positive; extra negative; ..."`` -> positive text and negatives (canonical + extra)."""
    parts = [part.strip() for part in text.split(";")]
    if not parts or not parts[0]:
        raise UserError(f"empty query {text!r}: write the text to look for, e.g. 'chair' or 'standing on'")
    extra = [p for p in parts[1:] if p]
    negatives = tuple(dict.fromkeys([*canonical, *extra]))
    return ParsedQuery(parts[0], tuple(n for n in negatives if n != parts[0]))


def pairwise_relevancy(
    features: Tensor, positive: Tensor, negatives: Tensor, temperature: float = RELEVANCY_TEMPERATURE
) -> Tensor:
    """LERF-style relevancy of ``features [N, D]`` for ``positive [D]`` against ``negatives [M, D]``."""
    feats = F.normalize(features.float(), dim=-1)
    pos = feats @ F.normalize(positive.float(), dim=-1)
    if negatives.numel() == 0:
        return torch.sigmoid(pos / temperature)
    neg = feats @ F.normalize(negatives.float(), dim=-1).T
    return torch.sigmoid((pos[:, None] - neg) / temperature).min(dim=-1).values


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class FieldQuery:
    """Queries on a loaded RelationField pipeline (points are in nerfstudio's normalised frame)."""

    def __init__(self, pipeline, chunk: int = 1 << 15) -> None:
        if not all(hasattr(pipeline.model, name) for name in HEADS):
            raise UserError(f"the run's model is {type(pipeline.model).__name__}, not a RelationField model")
        self.pipeline = pipeline
        self.model = pipeline.model
        self.chunk = chunk
        self._text_cache: dict[tuple[str, str], Tensor] = {}

    @classmethod
    def load(cls, config_path: Path) -> FieldQuery:
        """Load a run from its config.yml (on the GPU when there is one, else the CPU)."""
        return cls(load_pipeline(config_path))

    @property
    def device(self) -> torch.device:
        return self.model.device

    def relation_texts(self) -> list[str]:
        """The relation texts of the run's label store ([] when its data manager has none loaded)."""
        labels = getattr(getattr(self.pipeline, "datamanager", None), "labels", None)
        return list(getattr(labels, "predicates", []) or [])

    # ----------------------------------------------------------------- text
    def encode(self, texts: Sequence[str], space: str = "semantic") -> Tensor:
        """Text embeddings in the semantic or relation space of the run (cached per text)."""
        spec = self.model.label_spec
        name = spec.semantic_encoder if space == "semantic" else spec.relation_encoder
        missing = [t for t in dict.fromkeys(texts) if (name, t) not in self._text_cache]
        if missing:
            encoded = encoders.load_text_encoder(name).encode(missing)  # looked up per call: tests replace it
            for text, row in zip(missing, encoded):
                self._text_cache[(name, text)] = row
        return torch.stack([self._text_cache[(name, t)] for t in texts]).to(self.device)

    # --------------------------------------------------------------- frames
    def to_world(self, points: Tensor) -> Tensor:
        """nerfstudio frame -> the capture's world frame (undoes the dataparser transform and scale)."""
        outputs = self.pipeline.datamanager.train_dataparser_outputs
        transform = outputs.dataparser_transform.to(points)
        scaled = points / outputs.dataparser_scale
        return (scaled - transform[:, 3]) @ transform[:, :3]

    def to_model(self, points: Tensor) -> Tensor:
        """The capture's world frame -> nerfstudio frame."""
        outputs = self.pipeline.datamanager.train_dataparser_outputs
        transform = outputs.dataparser_transform.to(points)
        return (points @ transform[:, :3].T + transform[:, 3]) * outputs.dataparser_scale

    # ------------------------------------------------------------ features
    @torch.no_grad()
    def semantic(self, points: Tensor) -> Tensor:
        return self._head(self.model.semantic_head, points)

    @torch.no_grad()
    def instance(self, points: Tensor) -> Tensor:
        return self._head(self.model.instance_head, points)

    def _head(self, head, points: Tensor) -> Tensor:
        out = [
            head(self.model.normalize_positions(points[s].to(self.device))) for s in _chunks(len(points), self.chunk)
        ]
        return F.normalize(torch.cat(out), dim=-1) if out else torch.zeros(0, 1, device=self.device)

    @torch.no_grad()
    def relation(self, points: Tensor, references: Tensor) -> Tensor:
        """Relation features of ``points [N, 3]`` to the object at ``references [M, 3]`` (averaged over M)."""
        refs = self.model.normalize_positions(references.to(self.device).reshape(-1, 3))
        ref_encoding = self.model.relation_head.encode_query(refs)
        out = []
        step = max(1, self.chunk // max(len(refs), 1))
        for s in _chunks(len(points), step):
            x = self.model.normalize_positions(points[s].to(self.device))
            feats = self.model.relation_head(x[:, None, :], refs[None], ref_encoding[None])  # [n, M, D]
            out.append(F.normalize(feats, dim=-1).mean(dim=1))
        return F.normalize(torch.cat(out), dim=-1) if out else torch.zeros(0, 1, device=self.device)

    # ------------------------------------------------------------- queries
    def relevancy(self, features: Tensor, text: str, space: str) -> Tensor:
        """Relevancy in [0, 1] of ``features [N, D]`` (semantic or relation) for a query text."""
        query = parse_query(text, OBJECT_NEGATIVES if space == "semantic" else RELATION_NEGATIVES)
        table = self.encode([query.positive, *query.negatives], space)
        return pairwise_relevancy(features, table[0], table[1:])

    def object_relevancy(self, points: Tensor, text: str) -> Tensor:
        return self.relevancy(self.semantic(points), text, "semantic")

    def relation_relevancy(self, points: Tensor, references: Tensor, text: str) -> Tensor:
        return self.relevancy(self.relation(points, references), text, "relation")

    def predicate_probabilities(self, features: Tensor, texts: Sequence[str], temperature: float) -> Tensor:
        """Softmax over ``texts`` (relation space) of unit relation features ``[N, D]``: ``[N, len(texts)]``."""
        return torch.softmax(features @ self.encode(texts, "relation").to(features.dtype).T / temperature, dim=-1)

    def predicate_scores(
        self, subject_points: Tensor, object_points: Tensor, predicates: Sequence[str], temperature: float = 0.05
    ) -> list[tuple[str, float]]:
        """Predicates (plus "none") ranked for subject -> object, as softmax probabilities."""
        texts = [*predicates, NONE_PREDICATE] if NONE_PREDICATE not in predicates else list(predicates)
        feature = F.normalize(self.relation(subject_points, object_points).mean(dim=0), dim=-1)
        probs = self.predicate_probabilities(feature[None], texts, temperature)[0]
        order = torch.argsort(probs, descending=True).tolist()
        return [(texts[i], float(probs[i])) for i in order]

    @torch.no_grad()
    def render_relevancy(self, camera_index: int, text: str, reference: Tensor | None = None) -> Tensor:
        """Per-pixel relevancy [H, W] of a training view: an object query, or a relation query when a
        reference point (nerfstudio frame, [3]) is given (rendered with z = that point)."""
        camera = self.pipeline.datamanager.train_dataset.cameras[camera_index : camera_index + 1]
        bundle = camera.generate_rays(camera_indices=0).to(self.device)
        if reference is None:
            with self.model.rendering(features=True):
                features = self.model.get_outputs_for_camera_ray_bundle(bundle)["semantic"]
            space = "semantic"
        else:
            with self.model.rendering(features=False, relation_query=reference):
                features = self.model.get_outputs_for_camera_ray_bundle(bundle)["relation"]
            space = "relation"
        height, width = features.shape[:2]
        return self.relevancy(features.reshape(-1, features.shape[-1]), text, space).reshape(height, width).cpu()


def load_pipeline(config_path: Path):
    """A trained RelationField pipeline from its config.yml, with clear errors for other inputs."""
    config_path = Path(config_path)
    if not config_path.is_file():
        raise UserError(f"{config_path} does not exist (pass the config.yml of a training run)")
    from nerfstudio.utils.eval_utils import eval_setup  # lazy: nerfstudio is slow to import

    allow_nerfstudio_checkpoints()
    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except yaml.YAMLError as error:
        raise UserError(f"{config_path} is not a nerfstudio config ({error})") from error
    method = getattr(config, "method_name", None)
    if method not in RELATIONFIELD_METHODS:
        raise UserError(f"{config_path} is a run of method {method!r}; it must be one of {RELATIONFIELD_METHODS}")
    _, pipeline, _, _ = eval_setup(config_path, test_mode="inference")
    pipeline.eval()
    return pipeline


# ------------------------------------------------------------------ objects
def sample_reference(points: Tensor, count: int = REFERENCE_SAMPLES) -> Tensor:
    """At most ``count`` of an object's points (the same ones on every call), as relation query positions."""
    picks = torch.randperm(len(points), generator=torch.Generator().manual_seed(0))[:count]
    return points[picks]


def instance_points(
    query: FieldQuery, node_ids: Iterable[int], points_world: np.ndarray, point_node: np.ndarray
) -> dict[int, Tensor]:
    """Node id -> its points in the model's frame, for the nodes of ``node_ids`` that have points (an export's
    or an extraction's world-frame points and their node ids)."""
    objects = {}
    for node in node_ids:
        points = points_world[point_node == node]
        if len(points):
            objects[int(node)] = query.to_model(torch.from_numpy(np.asarray(points)).float())
    return objects


def find_reference(query: FieldQuery, objects: Mapping[int, Tensor], reference: str) -> int:
    """The object named by ``reference``: a node id ("#3"), or the object that best matches the text.

    ``objects`` maps node ids to their points (nerfstudio frame), as :func:`rank_objects` takes them.
    """
    if reference.startswith("#"):
        node_id = int(reference[1:]) if reference[1:].isdigit() else -1
        if node_id not in objects:
            raise UserError(f"no object {reference}; ids are {sorted(objects)}")
        return node_id
    scores = _mean_relevancy(query, objects, reference)
    return max(scores, key=scores.__getitem__)


def rank_objects(
    query: FieldQuery, objects: Mapping[int, Tensor], text: str, reference: Tensor | None = None
) -> list[tuple[int, float]]:
    """Objects (node id -> points) by mean relevancy for ``text``, best first: an object query, or a relation
    query to the ``reference`` points when given (see :func:`sample_reference`)."""
    scores = _mean_relevancy(query, objects, text, reference)
    return sorted(scores.items(), key=lambda item: -item[1])


def _mean_relevancy(
    query: FieldQuery, objects: Mapping[int, Tensor], text: str, reference: Tensor | None = None
) -> dict[int, float]:
    if reference is None:
        return {i: float(query.object_relevancy(points, text).mean()) for i, points in objects.items()}
    return {i: float(query.relation_relevancy(points, reference, text).mean()) for i, points in objects.items()}


# ------------------------------------------------------------------ referring queries
def answer_referring(
    query: FieldQuery, objects: Mapping[int, Tensor], parsed: ReferringQuery, config: ReferringConfig | None = None
) -> ReferringAnswer:
    """Rank ``objects`` (node id -> points, nerfstudio frame) for a referring or object query, by the rule
    of :mod:`relationfield.referring`, with this run's object and relation relevancies."""
    subject = _mean_relevancy(query, objects, parsed.subject) if parsed.subject else {}
    reference: dict[int, float] = {}
    if parsed.is_referring and parsed.reference_node is None:
        reference = _mean_relevancy(query, objects, parsed.reference or "")
    samples: dict[int, Tensor] = {}

    def relation(candidate: int, ref: int) -> float:
        if ref not in samples:
            samples[ref] = sample_reference(objects[ref])
        points = sample_reference(objects[candidate], CANDIDATE_SAMPLES)  # a floor has 40k points; 256 suffice
        return float(query.relation_relevancy(points, samples[ref], parsed.predicate or "").mean())

    return rank_referring(parsed, objects, subject.__getitem__, reference.__getitem__, relation, config)
