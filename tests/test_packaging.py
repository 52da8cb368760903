"""The wheel: it carries the shipped configs, and an install from it (not editable) reads them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [
    "relationfield/configs/3dssg_objects.txt",
    "relationfield/configs/3dssg_predicates.txt",
    "relationfield/configs/prompts/set_of_mark.txt",
    "relationfield/configs/paraphrases.json",
    "relationfield/py.typed",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """relationfield's wheel, built offline by setuptools from a copy of the package sources."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "relationfield", source / "relationfield", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    subprocess.run([sys.executable, "-c", build], cwd=source, check=True, capture_output=True, timeout=300)
    (path,) = out.glob("relationfield-*.whl")
    return path


def test_the_wheel_holds_the_configs_and_every_module(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED) <= names
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "relationfield").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    assert not [n for n in names if n.startswith(("tests/", "scripts/", "configs/"))]


def test_a_non_editable_install_reads_its_packaged_configs(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import relationfield, relationfield.vocab as v, relationfield.preprocess.prompt as p; "
        f"assert relationfield.__file__.startswith({str(site)!r}), relationfield.__file__; "
        "assert len(v.object_vocab()) == 160 and len(v.predicate_vocab()) == 26; "
        "assert '{tags}' in p.load_prompt(None); print(v.CONFIGS_DIR)"
    )
    # outside the checkout, with the extracted wheel first on the path (the editable finder comes after it)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(site / "relationfield" / "configs")
