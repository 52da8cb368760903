"""The check every loaded text encoder passes before its embeddings are used: finite outputs, the same text
encoded alike in different batches, and paraphrases clearly closer than different predicates.

Wrong weights load without an error and give finite embeddings: a checkpoint loaded into the wrong layout, remote
code whose buffers transformers left uninitialised (jina-embeddings-v3 under transformers 5), a scrambled file.
Such embeddings all look alike, or alike at random, so the check asks for meaning: each paraphrase pair below shares
no word (a broken model cannot pass on shared tokens), and its mean cosine must stand clearly above the mean cosine
of the pairs of different predicates, relative to the cosine of identical texts (1 for a sound model):
``score = (mean paraphrase cos - mean different cos) / (same-text cos - mean different cos)``.

Measured on all-MiniLM-L6-v2: the real model scores 0.57; the same model with every parameter tensor randomly
permuted, or re-drawn as at initialisation, scores between -0.25 and 0.09 (four seeds each), hence the threshold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from relationfield.encoders.load_errors import jina_version_note
from relationfield.errors import UserError

if TYPE_CHECKING:
    from relationfield.encoders.base import TextEncoder

#: Pairs of predicates that mean the same and share no word.
PARAPHRASES = (
    ("next to", "beside"),
    ("under", "below"),
    ("holding", "grasping"),
    ("looking at", "watching"),
    ("bigger than", "larger"),
    ("on top of", "above"),
    ("sitting on", "seated upon"),
    ("inside", "within"),
    ("near", "close to"),
    ("standing on", "stands upon"),
    ("carrying", "transporting"),
    ("behind", "in back of"),
)
#: Pairs of predicates that mean different things.
DIFFERENT = (
    ("standing on", "bigger than"),
    ("next to", "made of"),
    ("holding", "under"),
    ("looking at", "larger than"),
    ("sitting on", "behind"),
    ("inside", "eating"),
    ("near", "wearing"),
    ("above", "painted"),
)
#: The text encoded twice, alone and in a batch with longer texts (padding must not change its embedding).
SAME_TEXT = "standing on"
#: Lowest score (see the module docstring) a sound encoder reaches: MiniLM scores 0.57, scrambled weights <= 0.09.
MIN_SCORE = 0.25
#: Lowest cosine of the two encodings of SAME_TEXT: they differ only by float rounding in a sound encoder.
MIN_SAME_TEXT_COS = 0.99


def check_text_encoder(encoder: TextEncoder) -> None:
    """Raise unless ``encoder`` gives finite, stable and meaningful embeddings (see the module docstring).

    Raises:
        UserError: "wrong weights: ...", with the measured numbers.
    """
    import torch

    texts = list(dict.fromkeys(text for pair in (*PARAPHRASES, *DIFFERENT) for text in pair))
    table = dict(zip(texts, encoder.encode(texts)))
    alone = encoder.encode([SAME_TEXT])[0]
    if not all(bool(torch.isfinite(row).all()) for row in (*table.values(), alone)):
        raise _wrong_weights(encoder, "some embeddings are not finite (NaN or infinite values)")
    same = float(alone @ table[SAME_TEXT])
    if same < MIN_SAME_TEXT_COS:
        raise _wrong_weights(
            encoder, f"the same text encoded alone and in a batch differs (cosine {same:.3f} < {MIN_SAME_TEXT_COS})"
        )
    paraphrase = _mean_cos(table, PARAPHRASES)
    different = _mean_cos(table, DIFFERENT)
    spread = same - different
    score = (paraphrase - different) / spread if spread > 1e-3 else 0.0
    if score < MIN_SCORE:
        raise _wrong_weights(
            encoder,
            f"paraphrases (mean cosine {paraphrase:.3f}) are not clearly closer than different predicates "
            f"(mean cosine {different:.3f}): score {score:.2f} < {MIN_SCORE}",
        )


def _mean_cos(table: dict, pairs: tuple[tuple[str, str], ...]) -> float:
    """Mean cosine of the pairs (the rows of ``table`` have unit norm)."""
    return sum(float(table[a] @ table[b]) for a, b in pairs) / len(pairs)


def _wrong_weights(encoder: TextEncoder, why: str) -> UserError:
    """The error of a failed check, with the jina version fix when it may be the cause."""
    message = (
        f"wrong weights: the text encoder {encoder.name!r} loaded, but {why}. Its weights (or the code that "
        "loads them) are broken: re-download the model, or check the checkpoint it was given."
    )
    note = jina_version_note() if "jina" in encoder.name.lower() else ""
    return UserError(f"{message}\n{note}" if note else message)
