"""The Set-of-Mark prompt of the ``relations`` stage: the template file and a frame's filled-in prompt."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from relationfield.errors import UserError
from relationfield.vocab import CONFIGS_DIR

DEFAULT_PROMPT = CONFIGS_DIR / "prompts" / "set_of_mark.txt"
#: Placeholder of the prompt file replaced by the frame's tags ("1, 2, 3").
TAGS_PLACEHOLDER = "{tags}"


def load_prompt(path: Path | None) -> str:
    """The prompt template (``path``, or the shipped Set-of-Mark prompt)."""
    path = Path(path) if path is not None else DEFAULT_PROMPT
    if not path.is_file():
        raise UserError(f"prompt file {path} does not exist")
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        raise UserError(f"prompt file {path} is empty")
    return text


def fill_prompt(template: str, tags: Sequence[int]) -> str:
    """The prompt of a frame: ``{tags}`` replaced by its tags (appended when the template lacks it)."""
    tag_text = ", ".join(str(tag) for tag in tags)
    if TAGS_PLACEHOLDER in template:
        return template.replace(TAGS_PLACEHOLDER, tag_text)
    return f"{template}\n\nThe tags in this image are: {tag_text}."
