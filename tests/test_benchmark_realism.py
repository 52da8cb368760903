"""scripts/benchmark_realism.py on a tiny run: every level trains, exports and is scored, in one table."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from relationfield.labels.format import MANIFEST_FILE, default_labels_dir

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "benchmark_realism.py"


def test_the_benchmark_scores_clean_and_typical_labels(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("benchmark_realism", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    args = bench.Args(output=tmp_path, levels=("none", "typical"), steps=30, frames=8, resolution="64x48")
    bench.main(args)
    printed = capsys.readouterr().out
    assert "| none |" in printed and "| typical |" in printed
    rows = json.loads((tmp_path / "realism.json").read_text())
    assert set(rows) == {"none", "typical"}
    for level, row in rows.items():
        assert 0.0 <= row["object_r5"] <= 1.0 and row["seconds"] > 0, (level, row)
        assert row["guided_top1"] is not None, (level, row)  # relation-guided segmentation ran on the run
    assert rows["none"]["stated"] > rows["typical"]["stated"] > 0  # typical labels state fewer triples
    # the two levels were labelled differently: typical's label store records its rates, none's does not
    manifests = {lv: (default_labels_dir(tmp_path / lv / "capture") / MANIFEST_FILE).read_text() for lv in rows}
    assert '"typical"' in manifests["typical"] and "realism" not in manifests["none"]
    assert json.loads((tmp_path / "typical" / "demo.json").read_text())["realism"] == "typical"
    assert (tmp_path / "realism.md").read_text().startswith("| labels |")
    assert "Predicate R@3 by ground-truth predicate" in printed
    for level, row in rows.items():  # the per-predicate figures add up to the level's Predicate R@3
        by_predicate = row["predicate_r3_by_predicate"]
        hits = sum(count * r3 for count, r3 in by_predicate.values())
        assert hits / sum(count for count, _ in by_predicate.values()) == pytest.approx(row["predicate_r3"]), level
