"""When a failed vision-model request is sent again: exponential backoff with jitter, and ``Retry-After``.

429, 408, 409, 5xx, timeouts and connection errors are retried after :meth:`RetryPolicy.delay`
(``Retry-After`` / ``retry-after-ms`` is honoured when the server sends it); invalid replies are retried
at once. Transport failures and invalid replies share one budget: a frame gets at most ``retries + 1``
failed attempts. A reply cut off by the output-token limit is not counted in it: it is asked once more
with twice the limit, and fails the frame when cut off again
(:class:`~relationfield.preprocess.vision_client.VisionClient`).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: HTTP statuses worth another attempt besides the 5xx (timeout, conflict, rate limit).
RETRYABLE_STATUS = (408, 409, 429)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a frame is asked again."""

    retries: int = 3
    """Failed attempts allowed beyond the first (transport errors and invalid replies together)."""
    base_delay: float = 1.0
    """Backoff before the first retry, in seconds; doubled for each further failure."""
    max_delay: float = 60.0
    """Upper bound of one backoff (and of an honoured Retry-After)."""
    jitter: float = 0.5
    """Relative jitter: a delay d becomes uniform in [d (1 - jitter), d (1 + jitter)]."""

    def delay(self, failure: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        """Seconds to wait after the ``failure``-th failed attempt (1-based)."""
        if retry_after is not None:
            return max(0.0, min(retry_after, self.max_delay))
        base = self.base_delay * (2.0 ** (failure - 1))
        spread = (rng or random).uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return max(0.0, min(base * spread, self.max_delay))


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a server asks for: ``retry-after-ms``, else ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    milliseconds = headers.get("retry-after-ms")
    if milliseconds is not None:
        try:
            return max(0.0, float(milliseconds) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time()) if when is not None else None
