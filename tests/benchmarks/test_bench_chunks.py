"""benchmarks/bench_chunks.py: the smoke mode writes its figures, and prior refinement finds the same object."""
from __future__ import annotations

import json

import pytest

import benchmarks.bench_chunks as bench_chunks
from benchmarks.memory_counts import build, parameter_bytes
from benchmarks.common import to_gib

pytestmark = pytest.mark.usefixtures("single_thread")


def test_chunks_smoke_writes_json_and_prior_refines_the_same_object(results_dir):
    bench_chunks.run(size="cpu", smoke=True)
    written = json.loads((results_dir / "chunks.json").read_text())
    assert (results_dir / "chunks.png").stat().st_size > 0
    row = written["rows"][0]
    assert row["prior_points"] <= row["standard_points"]
    assert row["prior_foreground"] == row["standard_foreground"] > 0
    # one row per refinement rule at each chunk size; the original's rule finds the same object
    rows = {r["refinement"]: r for r in written["rows"]}
    assert sorted(rows) == ["original", "ours"] and set(written["median_speedup"]) == {"original", "ours"}
    assert rows["original"]["standard_foreground"] == rows["original"]["prior_foreground"] == row["standard_foreground"]
    # One decode call holds C's weights and more (volume, latents, patches): above the weight bytes alone.
    weights = to_gib(parameter_bytes(build("C", "brats", "meta")))
    assert written["memory_rows"][0]["decode_memory_GiB"] > weights
