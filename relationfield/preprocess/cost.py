"""Tokens and cost of the vision-language-model requests: usage reported, prices, and the dry run's estimate.

Prices are USD per million tokens (:data:`PRICES_PER_MILLION`, overridable per run); image tokens follow
OpenAI's tiling rule (:func:`image_tokens`), text is counted at about four characters per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

#: Image detail requested from the model (it decides the image's token count).
Detail = Literal["low", "high", "auto"]

#: USD per million (input, output) tokens. Dated snapshots (``gpt-4o-2024-08-06``) use their family's row.
PRICES_PER_MILLION: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
}

#: Completion tokens assumed per frame by the dry-run estimate (a frame's answer is typically 150-500).
ASSUMED_OUTPUT_TOKENS = 400
#: Tokens added by the chat format around one user message with an image (role markers etc.).
MESSAGE_OVERHEAD_TOKENS = 10
#: Tokens added by the chat format around each further message (the system message).
EXTRA_MESSAGE_TOKENS = 4

#: (base, per 512-px tile) image tokens where a model differs from the gpt-4o rule (85, 170): gpt-4o-mini
#: bills images at about the same price as gpt-4o by counting many more tokens.
IMAGE_TOKEN_RULES: dict[str, tuple[int, int]] = {"gpt-4o-mini": (2833, 5667)}


@dataclass
class Usage:
    """Token counts reported by the server (summed over requests)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        """Add ``other``'s counts to this one."""
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens

    def to_json(self) -> dict[str, int]:
        """``{"prompt_tokens": INT, "completion_tokens": INT}``."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


def _family(model: str, table: dict[str, tuple]) -> str | None:
    """The longest name of ``table`` that ``model`` is or is a dated snapshot of (``gpt-4o-mini-2024-07-18``)."""
    families = [name for name in table if model == name or model.startswith(name + "-")]
    return max(families, key=len) if families else None


def model_prices(
    model: str, price_input: float | None = None, price_output: float | None = None
) -> tuple[float, float] | None:
    """USD per million (input, output) tokens of ``model``; ``None`` when unknown.

    ``price_input`` / ``price_output`` override the table (both are needed for a model it lacks).
    A dated snapshot uses the longest table entry it starts with (``gpt-4o-mini-2024-07-18`` ->
    ``gpt-4o-mini``).
    """
    family = _family(model, PRICES_PER_MILLION)
    known = PRICES_PER_MILLION[family] if family is not None else None
    input_price = price_input if price_input is not None else (known[0] if known else None)
    output_price = price_output if price_output is not None else (known[1] if known else None)
    if input_price is None or output_price is None:
        return None
    return float(input_price), float(output_price)


def estimate_cost(usage: Usage, prices: tuple[float, float] | None) -> float | None:
    """USD cost of ``usage`` at ``prices`` (per million tokens); ``None`` when the prices are unknown."""
    if prices is None:
        return None
    return (usage.prompt_tokens * prices[0] + usage.completion_tokens * prices[1]) / 1_000_000


def format_cost(cost: float | None) -> str:
    """``$0.0123``, or how to make an unknown cost known."""
    return "unknown (pass --price-input and --price-output)" if cost is None else f"${cost:.4f}"


def image_tokens(width: int, height: int, detail: Detail, model: str = "gpt-4o") -> int:
    """Input tokens OpenAI bills for an image.

    ``low``: the base (85 for gpt-4o). ``high`` (and ``auto``, counted as the upper bound ``high``):
    the image is scaled to fit 2048 x 2048, then down so its shorter side is at most 768 (images are not
    enlarged), and costs base + per-tile tokens for each 512-px tile (85 + 170 n for gpt-4o;
    :data:`IMAGE_TOKEN_RULES` for models that count differently).
    """
    family = _family(model, IMAGE_TOKEN_RULES)
    base, per_tile = IMAGE_TOKEN_RULES[family] if family is not None else (85, 170)
    if detail == "low":
        return base
    scale = min(1.0, 2048 / max(width, height))
    w, h = width * scale, height * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    tiles = math.ceil(round(w, 6) / 512) * math.ceil(round(h, 6) / 512)
    return base + per_tile * tiles


def text_tokens(text: str) -> int:
    """Rough token count of English text (about four characters per token)."""
    return math.ceil(len(text) / 4)


def request_tokens(
    prompt: str, width: int, height: int, detail: Detail, model: str = "gpt-4o", system: str = ""
) -> int:
    """Estimated input tokens of one request: prompt text, image, system message and message overhead.

    The JSON schema of the answer format is not counted (servers differ in whether and how they bill it).
    """
    tokens = text_tokens(prompt) + image_tokens(width, height, detail, model) + MESSAGE_OVERHEAD_TOKENS
    return tokens + (text_tokens(system) + EXTRA_MESSAGE_TOKENS if system else 0)
