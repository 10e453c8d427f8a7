"""Every benchmark runs end to end at smoke size, writes its JSON result outside the repo, and leaves
RESULTS.md alone. These check that the harness keeps working, not how fast anything is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.cli import BENCHMARKS, main
from benchmarks.peer_clip_retrieval import PEER_VENV


def _run_smoke(name: str, tmp_path: Path, *extra: str) -> list[dict]:
    table_before = harness.RESULTS_TABLE.read_text() if harness.RESULTS_TABLE.exists() else None
    assert main([name, "--smoke", "--results-dir", str(tmp_path), *extra]) == 0
    table_after = harness.RESULTS_TABLE.read_text() if harness.RESULTS_TABLE.exists() else None
    assert table_after == table_before, "a smoke run must not append to RESULTS.md"
    files = sorted(tmp_path.glob("*.json"))
    assert files, f"{name} wrote no result"
    payloads = [json.loads(f.read_text()) for f in files]
    for payload in payloads:
        assert payload["smoke"] is True
        assert payload["machine"]["cores"] >= 1 and payload["machine"]["load_avg"]
        assert payload["metrics"], "a result without numbers"
    return payloads


SEPARATELY_TESTED = {"peer", "quality", "text-encoding", "ray-overhead", "soak"}


@pytest.mark.parametrize("name", sorted(set(BENCHMARKS) - SEPARATELY_TESTED))
def test_benchmark_smoke(name: str, tmp_path: Path) -> None:
    _run_smoke(name, tmp_path)


def test_peer_smoke(tmp_path: Path) -> None:
    if not (PEER_VENV / "bin" / "clip-retrieval").exists():
        pytest.skip(f"clip-retrieval's own virtualenv is not at {PEER_VENV} (set up by hand, see benchmarks/README.md)")
    payloads = _run_smoke("peer", tmp_path)
    assert {p["benchmark"] for p in payloads} == {"peer-serving", "peer-indexing"}
    assert all(p["metrics"].get("errors", 0) == 0 for p in payloads)


def test_quality_smoke_scores_every_system_and_rerank(tmp_path: Path) -> None:
    payloads = _run_smoke("quality", tmp_path)
    systems = {p["params"]["system"] for p in payloads}
    assert {p["params"]["rerank"] for p in payloads} == {"none", "multivariate", "reciprocal"}
    assert "zero-shot" in systems and any(s.startswith("checkpoint") for s in systems)
    for payload in payloads:
        assert set(payload["metrics"]) == {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"}


def test_text_encoding_smoke_is_exact(tmp_path: Path) -> None:
    payloads = _run_smoke("text-encoding", tmp_path)
    truncation = [p for p in payloads if p["benchmark"] == "text-encoding"]
    runtimes = [p for p in payloads if p["benchmark"] == "text-encoding-runtime"]
    assert truncation and all(p["metrics"]["max_abs_diff"] <= 1e-5 for p in truncation)
    assert runtimes and all(p["metrics"]["onnx_max_abs_diff"] <= 1e-5 for p in runtimes)


def test_soak_smoke_swaps_versions_under_load_without_errors(tmp_path: Path) -> None:
    (payload,) = _run_smoke("soak", tmp_path)
    metrics = payload["metrics"]
    assert metrics["errors"] == 0, payload["raw"]["errors"][:5]
    assert metrics["requests"] > 0 and metrics["swaps"] >= 1
    assert payload["raw"]["latencies_ms"]["text"] and payload["raw"]["latencies_ms"]["image"]
    assert metrics["rss_start_mib"] > 0 and metrics["rss_end_mib"] > 0


def test_record_appends_a_row_for_real_runs_only(tmp_path: Path) -> None:
    table = tmp_path / "RESULTS.md"
    result = harness.Result("demo", {"n": 3}, {"ms": 1.23456, "ok": 1}, notes="a|b")
    harness.record(result, smoke=True, results_dir=tmp_path / "smoke", table=table)
    assert not table.exists()
    path = harness.record(result, smoke=False, results_dir=tmp_path / "real", table=table)
    rows = [line for line in table.read_text().splitlines() if "| demo |" in line]
    assert len(rows) == 1 and "ms=1.23" in rows[0] and path.name in rows[0] and "a/b" in rows[0]
    assert rows[0].count("|") == harness.TABLE_HEADER.splitlines()[0].count("|")


def test_timing_and_percentile() -> None:
    calls = []
    timing = harness.time_repeated(lambda: calls.append(1), repeat=4, warmup=2)
    assert len(calls) == 6 and len(timing.samples) == 4
    assert timing.min <= timing.median <= timing.max
    assert harness.percentile(range(1, 101), 95) == 95
    assert harness.percentile([5.0], 99) == 5.0
    with pytest.raises(ValueError):
        harness.time_repeated(lambda: None, repeat=0)


def test_ray_overhead_smoke_embeds_the_same_vectors(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    (payload,) = _run_smoke("ray-overhead", tmp_path)
    assert payload["metrics"]["max_abs_diff"] <= 1e-5 and payload["metrics"]["overhead_ratio"] > 0


def test_scale_smoke_measures_each_given_search_setting_and_reuses_its_index(tmp_path: Path) -> None:
    built = ("--kinds", "ivf-pq", "--nlist", "16", "--pq-m", "32")
    payloads = _run_smoke("scale", tmp_path, *built, "--refine-factors", "4", "8", "--nprobes", "1", "16")
    rows = [p for p in payloads if p["benchmark"] == "scale" and p["params"].get("kind") == "ivf-pq"]
    assert sorted((p["params"]["nprobe"], p["params"]["refine_factor"]) for p in rows) == [(1, 4), (1, 8), (16, 4),
                                                                                          (16, 8)]
    assert {(p["params"]["nlist"], p["params"]["pq_m"], p["raw"]["index"]["refine_factor"]) for p in rows} == {
        (16, 32, 4)}  # built with the first factor
    for row in rows:
        assert row["metrics"]["reader_private_MiB"] > 0 and row["metrics"]["reader_file_backed_MiB"] > 0

    again = _run_smoke("scale", tmp_path, *built, "--reuse-index", "--nprobes", "2")
    reused = [p for p in again if p["benchmark"] == "scale" and p["params"].get("nprobe") == 2]
    assert len(reused) == 1  # searched the index of the first run: the same build record, not a new build
    assert reused[0]["metrics"]["build_s"] == rows[0]["metrics"]["build_s"]
