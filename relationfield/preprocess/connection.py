"""Where the vision-language model is served and with which key: base URL, API key, ``openai`` client.

The key comes from ``OPENAI_API_KEY`` only. Without it, a base URL on this machine or a private network
(vLLM, Ollama) gets the placeholder key ``EMPTY``; the OpenAI API (the default) is a :class:`UserError`.
The key is never written anywhere (:class:`~relationfield.preprocess.vision_client.VisionClient` scrubs
it from reasons and raw replies).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from relationfield.errors import UserError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
API_KEY_ENV = "OPENAI_API_KEY"
BASE_URL_ENV = "OPENAI_BASE_URL"
#: Key sent to local servers (vLLM, Ollama) when ``OPENAI_API_KEY`` is not set.
DUMMY_API_KEY = "EMPTY"


def is_local_url(url: str) -> bool:
    """Whether ``url`` names this machine or a private network (where servers rarely check keys)."""
    host = (urlparse(url).hostname or "").lower()
    if host in ("localhost", "") or host.endswith(".local") or host.endswith(".localhost") or "." not in host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def resolve_connection(base_url: str | None, environ: Mapping[str, str]) -> tuple[str, str]:
    """``(base_url, api_key)``: ``--base-url``, else ``OPENAI_BASE_URL``, else the OpenAI API; the key
    from ``OPENAI_API_KEY`` (``EMPTY`` for local servers without one).

    Raises:
        UserError: no key is set and the server is not local.
    """
    url = (base_url or environ.get(BASE_URL_ENV) or "").strip() or DEFAULT_BASE_URL
    if urlparse(url).scheme not in ("http", "https"):
        raise UserError(f"the base URL must start with http:// or https://, got {url!r}")
    key = (environ.get(API_KEY_ENV) or "").strip()
    if key:
        return url, key
    if is_local_url(url):
        return url, DUMMY_API_KEY
    raise UserError(
        f"no API key: set the environment variable {API_KEY_ENV} (export {API_KEY_ENV}=...) to ask {url}, "
        f"or point --base-url (or {BASE_URL_ENV}) at a local OpenAI-compatible server such as vLLM or Ollama. "
        "The key is read from the environment only and never written to disk."
    )


def make_openai_client(base_url: str, api_key: str, timeout: float) -> Any:
    """An ``openai.OpenAI`` client without its own retries (``VisionClient`` retries)."""
    import openai  # lazy: the CLI imports this module to build `relationfield --help`

    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout, max_retries=0)


def connected_client(base_url: str | None, timeout: float, client: Any = None) -> tuple[Any, str | None]:
    """An OpenAI client for ``base_url`` with the key from the environment, or ``client`` as given, and the
    key to mask in messages (None when a given client carries none)."""
    if client is None:
        url, key = resolve_connection(base_url, os.environ)
        return make_openai_client(url, key, timeout), key
    key = getattr(client, "api_key", None)
    return client, key if isinstance(key, str) else None
