"""The benchmark scripts run end to end in their quick modes (a check of the harness, not of speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_pgvector_scale_quick_writes_its_figures(tmp_path: Path) -> None:
    pytest.importorskip("pgserver", reason="the pgvector extra is not installed")
    out = tmp_path / "scale.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "pgvector_scale.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert set(doc["figures"]) == {"pg_full_snapshot_peak_rss_mib", "pg_diff_snapshot_peak_rss_mib"}
    assert [run["rows"] for run in doc["cases"]["runs"]] == [20_000, 60_000]
    for run in doc["cases"]["runs"]:
        assert (run["full"]["mode"], run["diff"]["mode"], run["diff_one_pass"]["mode"]) == ("full", "diff", "diff")
        assert run["full"]["rows"] == run["rows"]
        assert 0 < run["diff"]["peak_rss_mib"] < 4096


def _rebuild_cases() -> Any:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import rebuild_cases

    return rebuild_cases


def test_benchmarks_entry_point_lists_every_suite() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for suite in ("core", "pgvector", "pgvector-scale", "milvus", "s3", "gpu", "rebuild", "all"):
        assert f"  {suite} " in proc.stdout
    unknown = subprocess.run([sys.executable, "-m", "benchmarks", "nosuch"], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert unknown.returncode == 2 and "unknown suite" in unknown.stderr


def test_rebuild_index_specs_are_sized_to_n() -> None:
    rebuild = _rebuild_cases()
    # About 4·sqrt(N) lists, a power of two, never fewer than 39 rows a list (FAISS's k-means minimum).
    assert [rebuild.ivf_lists(n) for n in (2_000, 5_000, 10_000, 100_000, 1_000_000)] == [32, 128, 256, 1024, 4096]
    assert rebuild.faiss_factory("ivf_pq", 100_000, 128) == "IVF1024,PQ16"
    assert rebuild.faiss_factory("ivf_flat", 10_000, 128) == "IVF256,Flat"
    assert [rebuild.pq_subquantizers(d) for d in (16, 100, 128, 768)] == [2, 10, 16, 64]
    assert rebuild.pg_index("ivf_flat", 100_000) == ("ivfflat", {"lists": 1024})
    assert rebuild.milvus_index("ivf_pq", 100_000, 128) == ("IVF_PQ", {"nlist": 1024, "m": 16, "nbits": 8})


def test_rebuild_quick_restores_every_case_and_writes_the_report(tmp_path: Path) -> None:
    for module in ("faiss", "matplotlib", "pgserver", "milvus_lite", "moto"):
        pytest.importorskip(module, reason=f"{module} is not installed (the dev extra has it)")
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "rebuild", "--quick", "--out", str(out), "--workdir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((out / "rebuild.json").read_text())
    assert doc["benchmark"] == "vecdr rebuild sweep" and doc["config"]["quick"]
    assert len(doc["machine"]["loadavg_start"]) == 3
    assert doc["cases"]["failed"] == []
    runs = doc["cases"]["runs"]
    assert {(r["backend"], r["index"], r["rows"]) for r in runs} == {
        ("faiss", "flat", 2000), ("faiss", "hnsw", 2000), ("faiss", "flat", 5000), ("faiss", "hnsw", 5000),
        ("pgvector", "hnsw", 2000), ("milvus", "flat", 2000), ("milvus", "hnsw", 2000),
    }  # fmt: skip
    own_baselines = {"faiss": {"build", "write_index", "read_index"}, "pgvector": {"build", "pg_restore"},
                     "milvus": {"build"}}  # fmt: skip
    for case in runs:
        assert case["dim"] == 16
        assert set(case["baselines"]) == own_baselines[case["backend"]]
        for store in ("local", "s3"):
            assert case["snapshots"][store]["rows"] == case["rows"]
            for run in case["restores"][store]["runs"]:
                assert run["rows"] == run["target_rows"] == case["rows"]
                assert sum(run["breakdown"].values()) == pytest.approx(run["seconds"], rel=0.05, abs=1e-3)
        assert set(case["ratios"]) >= {"local/build", "s3/build"}
    pg = next(r for r in runs if r["backend"] == "pgvector")
    assert pg["pg_dump"]["file_bytes"] > 0 and pg["baselines"]["pg_restore"]["runs"][0]["rows"] == 2000
    assert len(doc["summary"]) == len(runs)
    assert {s["reason"] for s in doc["cases"]["skipped"]} >= {"pgvector has no flat index here"}
    for png in ("rebuild-vs-n.png", "rebuild-phases.png", "rebuild-ratios.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = (out / "rebuild.md").read_text()
    assert "](rebuild-vs-n.png)" in summary and "### pgvector" in summary and "load average" in summary
    assert list(tmp_path.glob("vecdr-rebuild-*")) == []  # the work folder is removed
