"""The realistic label model's rates (``relationfield label-gt --realism``): presets and their sources.

``label-gt`` labels a synthetic capture from its ground truth. With ``--realism none`` (the default) the labels
are perfect: every ground-truth relation in every frame that shows both objects, with all its predicates
spelled as the evaluation vocabulary spells them, on masks that are exactly the objects. ``typical`` and
``hard`` make them look like the labels of the real preprocessing (SAM masks, a vision-language model asked
through Set-of-Mark): :mod:`relationfield.labels.realism_masks` corrupts the masks,
:mod:`relationfield.labels.realism_relations` chooses and corrupts the stated relations and
:mod:`relationfield.labels.wording` words predicates and object names.

Rates of the presets and where they come from ("guess" marks a value no measurement backs; the sources are
the Set-of-Mark paper, Yang et al. 2023, whose GPT-4V answers name a handful of relations per image, one
predicate each, in free wording; the RelationField reference prompts, which ask for free-form relations;
this package's own prompt ``configs/prompts/set_of_mark.txt``, which lists the vocabulary but allows other
phrases; and SAM, Kirillov et al. 2023, which proposes whole, part and sub-part masks for one click):

===========================  =======  =====  =========================================================
rate                         typical  hard   source
===========================  =======  =====  =========================================================
relations_per_frame (mean)   10       6      SoM answers name a handful of relations (5-15) per image;
                                             hard: a terse model (guess)
single_predicate_rate        0.8      0.9    SoM and reference answers: mostly one predicate each
paraphrase_rate              0.5      0.9    our prompt lists the vocabulary (typical: half the time
                                             another phrase, guess); the reference's prompt is free-form
synonym_rate                 0.3      0.6    the prompt asks for "a short, specific noun" (guess)
flip_rate                    0.05     0.15   guess (GPT-4V confuses directions of spatial relations)
confusion_rate               0.1      0.25   guess
plausible_confusion_share    0.8      0.8    guess (wrong predicates are near misses, not random)
hallucination_rate           0.05     0.15   guess (SoM marks ground the answer, so rare)
split_rate                   0.15     0.3    SAM proposes part masks of multi-part objects (rate: guess)
merge_rate                   0.1      0.25   guess (SAM's whole-object mask of a cup on a table)
tiny_area_fraction           0.003    0.005  3x / 5x ``relationfield masks --min-area-fraction`` (0.001)
tiny_drop_rate               0.5      0.8    guess (SAM misses thin and tiny objects)
boundary_rate                0.5      0.8    guess
boundary_pixels (at most)    1        2      SAM bleeds a few pixels at 1024 px; ~1 px at 128-256 px
max_masks                    40       40     ``relationfield masks --max-masks`` default
===========================  =======  =====  =========================================================

``none`` has every rate at 0, ``relations_per_frame`` 0 (no limit) and ``max_masks`` 0 (no limit), and
writes exactly the labels ``label-gt`` always wrote. Any rate can be set on its own on top of a preset.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from relationfield.errors import UserError
from relationfield.labels.format import MAX_MASKS_PER_FRAME

RealismLevel = Literal["none", "typical", "hard"]
REALISM_LEVELS: tuple[str, ...] = ("none", "typical", "hard")


@dataclass(frozen=True)
class RealismConfig:
    """Rates of the realistic label model (all 0: the perfect labels of ``--realism none``)."""

    relations_per_frame: float = 0.0
    """Mean number of relations stated per frame; each frame states at most K ~ max(1, Poisson(mean)),
    close and salient pairs first (0: every ground-truth relation)."""
    single_predicate_rate: float = 0.0
    """Probability that a relation with several true predicates is stated with one of them only."""
    paraphrase_rate: float = 0.0
    """Probability that a predicate is worded by a paraphrase (configs/paraphrases.json) instead of its
    vocabulary spelling."""
    synonym_rate: float = 0.0
    """Probability that an object is named by a synonym (configs/paraphrases.json) instead of its label."""
    flip_rate: float = 0.0
    """Probability that a relation is stated in the wrong direction (object and subject swapped)."""
    confusion_rate: float = 0.0
    """Probability that a relation is stated with one wrong predicate instead of its true ones."""
    plausible_confusion_share: float = 0.0
    """Share of wrong predicates drawn from the plausible confusions of the true one (standing on / lying
    on / supported by, higher than / standing on, bigger than / smaller than, ...), the rest uniformly."""
    hallucination_rate: float = 0.0
    """Probability that a stated relation is made up: a pair without a ground-truth relation."""
    split_rate: float = 0.0
    """Probability that a multi-part object's mask is split in two parts in a frame."""
    merge_rate: float = 0.0
    """Probability that a small object's mask is merged into the mask of the object it stands or lies on."""
    tiny_area_fraction: float = 0.003
    """Masks smaller than this fraction of the image count as tiny (see tiny_drop_rate)."""
    tiny_drop_rate: float = 0.0
    """Probability that a tiny mask is missed (dropped from the frame)."""
    boundary_rate: float = 0.0
    """Probability that a mask's boundary is eroded or dilated (half the time each)."""
    boundary_pixels: int = 1
    """The most pixels a boundary moves (each edit moves it 1..boundary_pixels pixels)."""
    max_masks: int = 0
    """The most masks kept per frame, the largest first (0: no limit)."""

    @property
    def is_clean(self) -> bool:
        """Whether these rates give the perfect labels of ``--realism none``."""
        rates = [getattr(self, name) for name in RATE_NAMES if name.endswith("_rate")]
        return not any(rates) and self.relations_per_frame == 0 and self.max_masks == 0

    def check(self) -> None:
        """Raise :class:`UserError` when a rate is out of range (worded as the command line's flags)."""
        for name in RATE_NAMES:
            value = getattr(self, name)
            flag = "--" + name.replace("_", "-")
            if name.endswith(("_rate", "_share")) and not 0.0 <= float(value) <= 1.0:
                raise UserError(f"{flag} must be a probability in [0, 1], got {value}")
        if not self.relations_per_frame >= 0:
            raise UserError(f"--relations-per-frame must be >= 0 (0: no limit), got {self.relations_per_frame}")
        if not 0.0 <= self.tiny_area_fraction < 1.0:
            raise UserError(f"--tiny-area-fraction must be in [0, 1), got {self.tiny_area_fraction}")
        if int(self.boundary_pixels) != self.boundary_pixels or self.boundary_pixels < 1:
            raise UserError(f"--boundary-pixels must be a whole number >= 1, got {self.boundary_pixels}")
        if int(self.max_masks) != self.max_masks or not 0 <= self.max_masks <= MAX_MASKS_PER_FRAME:
            raise UserError(f"--max-masks must be in 0..{MAX_MASKS_PER_FRAME} (0: no limit), got {self.max_masks}")

    def options(self) -> dict[str, Any]:
        """The rates as the manifest records them."""
        return asdict(self)


RATE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RealismConfig))
"""Every rate of :class:`RealismConfig`, in declaration order (each is a ``label-gt`` flag)."""

PRESETS: dict[str, RealismConfig] = {
    "none": RealismConfig(),
    "typical": RealismConfig(
        relations_per_frame=10.0,
        single_predicate_rate=0.8,
        paraphrase_rate=0.5,
        synonym_rate=0.3,
        flip_rate=0.05,
        confusion_rate=0.1,
        plausible_confusion_share=0.8,
        hallucination_rate=0.05,
        split_rate=0.15,
        merge_rate=0.1,
        tiny_area_fraction=0.003,
        tiny_drop_rate=0.5,
        boundary_rate=0.5,
        boundary_pixels=1,
        max_masks=40,
    ),
    "hard": RealismConfig(
        relations_per_frame=6.0,
        single_predicate_rate=0.9,
        paraphrase_rate=0.9,
        synonym_rate=0.6,
        flip_rate=0.15,
        confusion_rate=0.25,
        plausible_confusion_share=0.8,
        hallucination_rate=0.15,
        split_rate=0.3,
        merge_rate=0.25,
        tiny_area_fraction=0.005,
        tiny_drop_rate=0.8,
        boundary_rate=0.8,
        boundary_pixels=2,
        max_masks=40,
    ),
}
"""The ``--realism`` levels (see the module docstring for each value's source)."""


def realism_config(level: str = "none", **overrides: Any) -> RealismConfig:
    """The preset ``level`` with the rates given in ``overrides`` (``None`` values keep the preset's).

    Raises:
        UserError: an unknown level or rate, or a rate out of range.
    """
    if level not in PRESETS:
        raise UserError(f"--realism must be one of {', '.join(REALISM_LEVELS)}, got {level!r}")
    unknown = sorted(set(overrides) - set(RATE_NAMES))
    if unknown:
        raise UserError(f"unknown realism rate(s): {', '.join(unknown)}")
    config = replace(PRESETS[level], **{name: value for name, value in overrides.items() if value is not None})
    config.check()
    return config
