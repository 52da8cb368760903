"""Why a sentence-transformers model failed to load, and the fix to name: the known incompatibilities of
remote model code (jina-embeddings-v3's above all) with sentence-transformers and transformers versions.

The version ranges are those with which jina-embeddings-v3's remote code (``custom_st.py`` in the model
repository, the XLM-RoBERTa implementation in ``jinaai/xlm-roberta-flash-implementation``) loads correctly:

* sentence-transformers 5.4 started passing ``cache_dir`` inside the config/model keyword arguments of a
  custom module, and ``custom_st.py`` passes ``cache_dir=`` again: ``AutoConfig.from_pretrained() got
  multiple values for keyword argument 'cache_dir'`` (5.1-5.3 pass it as a separate argument);
* transformers 5 reads ``all_tied_weights_keys``, which only ``PreTrainedModel.post_init()`` sets and the
  remote ``XLMRobertaLoRA`` never calls, and it re-creates every non-persistent buffer with
  ``torch.empty_like`` after loading, so the rotary ``inv_freq`` buffers would hold leftover memory
  (finite, wrong embeddings) even where loading gets through;
* the remote rotary and attention code imports ``einops``.
"""

from __future__ import annotations

import re
from importlib import metadata

#: transformers releases jina-embeddings-v3's remote code works with (5.0 breaks it, see the module docstring).
JINA_TRANSFORMERS_RANGE = ">=4.41,<5"
#: sentence-transformers releases that pass ``cache_dir`` the way ``custom_st.py`` expects (5.4 changed it).
JINA_SENTENCE_TRANSFORMERS_RANGE = ">=5.1,<5.4"
#: The one command that installs the working set, named in every version-related error.
JINA_PIN_COMMAND = (
    f"pip install 'transformers{JINA_TRANSFORMERS_RANGE}' "
    f"'sentence-transformers{JINA_SENTENCE_TRANSFORMERS_RANGE}' einops"
)
# transformers' own message when remote code imports packages that are missing (dynamic_module_utils.check_imports).
_MISSING_PACKAGES = re.compile(r"requires the following packages that were not found in your environment: ([^.]+)\.")


def installed_version(package: str) -> str | None:
    """The installed version of ``package`` (a distribution name), or ``None`` when it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _major_minor(version: str | None) -> tuple[int, int] | None:
    numbers = re.findall(r"\d+", version or "")[:2]
    return (int(numbers[0]), int(numbers[1]) if len(numbers) > 1 else 0) if numbers else None


def jina_version_problems() -> list[str]:
    """What in the installed versions is known to break jina-embeddings-v3 (empty when nothing is)."""
    problems = []
    transformers = installed_version("transformers")
    if (_major_minor(transformers) or (0, 0)) >= (5, 0):
        problems.append(f"transformers {transformers} (needs {JINA_TRANSFORMERS_RANGE})")
    sentence_transformers = installed_version("sentence-transformers")
    if (_major_minor(sentence_transformers) or (0, 0)) >= (5, 4):
        problems.append(f"sentence-transformers {sentence_transformers} (needs {JINA_SENTENCE_TRANSFORMERS_RANGE})")
    if installed_version("einops") is None:
        problems.append("einops is not installed")
    return problems


def jina_version_note() -> str:
    """A sentence naming what in the installed versions breaks jina-embeddings-v3 and the fix, or ``""``."""
    problems = jina_version_problems()
    if not problems:
        return ""
    return (
        "jina-embeddings-v3's remote code is known to work only with "
        f"transformers{JINA_TRANSFORMERS_RANGE}, sentence-transformers{JINA_SENTENCE_TRANSFORMERS_RANGE} and "
        f"einops; installed: {'; '.join(problems)}. Fix: {JINA_PIN_COMMAND}"
    )


def _chain(error: BaseException) -> list[BaseException]:
    """``error`` and the exceptions it was raised from or during (remote code often re-raises)."""
    chain: list[BaseException] = []
    while error is not None and error not in chain and len(chain) < 8:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def known_fix(error: BaseException) -> str | None:
    """The fix for a known load failure of remote model code, or ``None`` when the failure is not a known one."""
    for link in _chain(error):
        message = str(link)
        if "multiple values for keyword argument 'cache_dir'" in message:
            return (
                "The model's remote code passes cache_dir itself, which sentence-transformers>=5.4 also passes "
                f"(installed: {installed_version('sentence-transformers')}); jina-embeddings-v3 needs "
                f"sentence-transformers{JINA_SENTENCE_TRANSFORMERS_RANGE}. Fix: {JINA_PIN_COMMAND}"
            )
        if "all_tied_weights_keys" in message:
            return (
                "The model's remote code does not call post_init(), which transformers>=5 relies on (installed: "
                f"{installed_version('transformers')}); jina-embeddings-v3's remote code needs "
                f"transformers{JINA_TRANSFORMERS_RANGE}. Fix: {JINA_PIN_COMMAND}"
            )
        missing = _MISSING_PACKAGES.search(message)
        if missing:
            packages = " ".join(name.strip() for name in missing.group(1).split(","))
            return f"The model's remote code imports packages that are not installed. Fix: pip install {packages}"
        if isinstance(link, ImportError) and (link.name == "einops" or "einops" in message):
            return "The model's remote code imports einops, which is not installed. Fix: pip install einops"
    return None


def describe(error: BaseException) -> str:
    """``Type: message`` of ``error``, the way a traceback's last line shows it."""
    return f"{type(error).__name__}: {error}"
