"""One verdict per stage from the doctor's checks: can masks, relations, embed, train and viewer/export run
here, and if not, which pieces are missing (their fixes stand next to their checks)."""

from __future__ import annotations

from relationfield.doctor.report import Check, DoctorReport, Verdict
from relationfield.doctor.system import CONFIGS, EINOPS, JINA_VERSIONS, PLUGIN
from relationfield.encoders.registry import is_clip_encoder_name
from relationfield.encoders.sentence import JINA_TEXT_ENCODER, OFFLINE_TEXT_ENCODER
from relationfield.preprocess.connection import API_KEY_ENV, BASE_URL_ENV

OFFLINE_EMBED = f"relationfield embed --text-encoder {OFFLINE_TEXT_ENCODER} --semantic-source text"


def verdicts(report: DoctorReport, text_encoder: str, local_base_url: bool, offline: bool) -> list[Verdict]:
    """The verdicts of every stage, in pipeline order.

    Args:
        report: the checks (its verdicts are ignored).
        text_encoder: the text encoder the checks looked for.
        local_base_url: whether ``OPENAI_BASE_URL`` (when set) names this machine or a private network.
        offline: whether Hugging Face is in offline mode (weights that are not cached cannot be had).
    """
    return [
        masks_verdict(report),
        relations_verdict(report, local_base_url),
        embed_verdict(report, text_encoder, offline),
        train_verdict(report),
        viewer_verdict(report),
    ]


def masks_verdict(report: DoctorReport) -> Verdict:
    """masks needs segment-anything and a SAM checkpoint."""
    gaps = _missing(report, "torch", "segment-anything", "SAM checkpoint")
    if gaps:
        return Verdict("masks", "blocked", _needs(gaps))
    on_cpu = report.check("CUDA").state != "ok"
    return Verdict("masks", "ready", "SAM checkpoint found" + ("; on the CPU SAM is slow" if on_cpu else ""))


def relations_verdict(report: DoctorReport, local_base_url: bool) -> Verdict:
    """relations needs the openai client and an API key, or a base URL of a local server."""
    gaps = _missing(report, "openai", CONFIGS)  # the Set-of-Mark prompt is a packaged config
    if gaps:
        return Verdict("relations", "blocked", _needs(gaps))
    key = report.check(API_KEY_ENV).state == "ok"
    url = report.check(BASE_URL_ENV).state == "ok"
    if key:
        return Verdict("relations", "ready", f"{API_KEY_ENV} is set" + (f" ({BASE_URL_ENV} too)" if url else ""))
    if url and local_base_url:
        return Verdict("relations", "ready", f"{BASE_URL_ENV} names a local server (no key needed)")
    if url:
        detail = f"{BASE_URL_ENV} names a remote server and {API_KEY_ENV} is not set: export {API_KEY_ENV}=..."
    else:
        detail = (
            f"{API_KEY_ENV} is not set: export {API_KEY_ENV}=..., or point {BASE_URL_ENV} "
            "(or relations --base-url) at a local OpenAI-compatible server"
        )
    return Verdict("relations", "blocked", detail)


def embed_verdict(report: DoctorReport, text_encoder: str, offline: bool) -> Verdict:
    """embed needs the text encoder and CLIP (their packages, and their weights cached or downloadable)."""
    packages = ["torch", "open_clip"]
    if not is_clip_encoder_name(text_encoder):
        packages += ["sentence-transformers", "transformers", "huggingface_hub"]
    if text_encoder.split("@")[0] == JINA_TEXT_ENCODER:
        packages += [EINOPS, JINA_VERSIONS]
    gaps = _missing(report, *packages)
    weights = _missing(report, "text encoder", "CLIP")
    uncached = [check for check in weights if check.downloadable]
    broken = [check for check in weights if not check.downloadable]
    if not gaps and not weights:
        return Verdict("embed", "ready", "the text encoder and CLIP weights are here")
    if not gaps and not broken and not offline:
        return Verdict("embed", "download", f"not cached, downloaded on first use: {_names(uncached)}")
    parts = [_needs(gaps + broken)] if gaps or broken else []
    if uncached:
        why = "Hugging Face offline mode" if offline else "download them first"
        parts.append(f"not cached ({why}): {_names(uncached)}")
    minilm = "text encoder" if text_encoder == OFFLINE_TEXT_ENCODER else "offline text encoder"
    if report.check(minilm).state == "ok" and not _missing(report, "torch", "sentence-transformers", "transformers"):
        parts.append(f"offline alternative: {OFFLINE_EMBED}")
    return Verdict("embed", "blocked", "; ".join(parts))


def train_verdict(report: DoctorReport) -> Verdict:
    """train needs nerfstudio and the registered methods; a GPU (with tcnn) is faster, the CPU works."""
    gaps = _missing(report, "torch", "nerfstudio", PLUGIN)
    if gaps:
        return Verdict("train", "blocked", _needs(gaps))
    cuda, tcnn = report.check("CUDA"), report.check("tcnn")
    if cuda.state == "ok":
        grids = "tcnn hash grids" if tcnn.state == "ok" else "torch hash grids (tinycudann would be faster)"
        detail = f"on the GPU ({cuda.detail.split(' (CUDA')[0]}), {grids}"
    else:
        detail = "CPU fallback (no CUDA GPU): relationfield-lite trains in minutes, the relationfield preset is slow"
    if report.check("LPIPS AlexNet").state != "ok":
        detail += "; LPIPS AlexNet weights not cached (downloaded at start, or NaN metric offline)"
    return Verdict("train", "ready", detail)


def viewer_verdict(report: DoctorReport) -> Verdict:
    """The viewer needs nerfstudio and viser; export and query need hdbscan and the run's text encoder."""
    gaps = _missing(report, "torch", "nerfstudio", PLUGIN, CONFIGS, "viser", "hdbscan")  # vocabularies
    if gaps:
        return Verdict("viewer/export", "blocked", _needs(gaps))
    return Verdict("viewer/export", "ready", "ns-viewer and export (they load the run's own text encoder)")


def _missing(report: DoctorReport, *keys: str) -> list[Check]:
    return [check for check in (report.check(key) for key in keys) if check.state == "missing"]


def _names(checks: list[Check]) -> str:
    return ", ".join(check.label for check in checks)


def _needs(checks: list[Check]) -> str:
    return f"needs {_names(checks)} (fixes above)"
