"""The Set-of-Mark prompt of the ``relations`` stage: the template file, its predicate list, the system
message and a frame's filled-in prompt.

The template's ``{predicates}`` is replaced once per run by the 3DSSG predicates
(``configs/3dssg_predicates.txt`` without "none"), quoted and comma-separated; the viewpoint-dependent
ones (:data:`VIEWPOINT_PREDICATES`) are listed only when asked for, else the list ends with a note not
to use such predicates. A template without ``{predicates}`` is used as written. ``{tags}`` is replaced
per frame by the frame's tags (appended when the template lacks it).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from relationfield.errors import UserError
from relationfield.vocab import CONFIGS_DIR, predicate_vocab

DEFAULT_PROMPT = CONFIGS_DIR / "prompts" / "set_of_mark.txt"
#: Placeholder of the prompt file replaced by the frame's tags ("1, 2, 3").
TAGS_PLACEHOLDER = "{tags}"
#: Placeholder of the prompt file replaced by the predicate list (``"supported by", "close by", ...``).
PREDICATES_PLACEHOLDER = "{predicates}"

#: The system message sent before each frame's prompt (``--system-message`` replaces it).
SYSTEM_MESSAGE = (
    "You annotate photos of indoor scenes for a 3D scene graph. You only describe what the image shows, "
    "and you answer with JSON only, exactly in the form asked for."
)

#: The 3DSSG predicates that depend on where the camera stands.
VIEWPOINT_PREDICATES = ("left", "right", "front", "behind")
#: Predicates dropped from answers when viewpoint-dependent ones are not asked for: the 3DSSG ones and
#: the phrasings a model uses for them.
VIEWPOINT_PHRASES = frozenset(
    VIEWPOINT_PREDICATES
    + ("left of", "right of", "to the left of", "to the right of", "on the left of", "on the right of")
    + ("in front of", "in front", "behind of", "in back of", "at the back of")
)


def prompt_predicates(viewpoint: bool = False) -> list[str]:
    """The 3DSSG predicates the prompt lists (the viewpoint-dependent ones only when ``viewpoint``)."""
    return [p for p in predicate_vocab() if viewpoint or p.lower() not in VIEWPOINT_PREDICATES]


def predicate_list(viewpoint: bool = False) -> str:
    """What ``{predicates}`` becomes: the quoted predicates and how to read the viewpoint-dependent ones."""
    listed = ", ".join(f'"{p}"' for p in prompt_predicates(viewpoint))
    if viewpoint:
        return f"{listed} (left, right, front and behind as seen in this image)"
    return f"{listed} (and no predicate that depends on the viewpoint, such as left, right, front or behind)"


def excluded_predicates(viewpoint: bool = False) -> frozenset[str]:
    """Predicates dropped from the answers of a run (the viewpoint-dependent ones unless ``viewpoint``)."""
    return frozenset() if viewpoint else VIEWPOINT_PHRASES


def load_prompt(path: Path | None, viewpoint: bool = False) -> str:
    """The prompt template (``path``, or the shipped Set-of-Mark prompt) with ``{predicates}`` filled in."""
    path = Path(path) if path is not None else DEFAULT_PROMPT
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise UserError(f"prompt file {path} is empty")
    if PREDICATES_PLACEHOLDER in text:
        text = text.replace(PREDICATES_PLACEHOLDER, predicate_list(viewpoint))
    return text


def fill_prompt(template: str, tags: Sequence[int]) -> str:
    """The prompt of a frame: ``{tags}`` replaced by its tags (appended when the template lacks it)."""
    tag_text = ", ".join(str(tag) for tag in tags)
    if TAGS_PLACEHOLDER in template:
        return template.replace(TAGS_PLACEHOLDER, tag_text)
    return f"{template}\n\nThe tags in this image are: {tag_text}."
