"""The Milvus benchmark's smoke test: ``benchmarks/milvus.py --quick`` runs end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("milvus_lite", reason="the milvus extra is not installed")

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "quick-milvus.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "milvus.py"), "--quick", "--out", str(out),
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from milvus import TARGETS

    assert set(doc["figures"]) == set(TARGETS)
    assert doc["config"]["quick"] and doc["config"]["rows"] == 3000
    restored = doc["cases"]["restore"]["vecdr_restore"]["runs"][0]
    assert restored["rows"] == 3000 + 10 - 10  # after the 1% change: 10 inserted, 10 deleted
    restore = doc["cases"]["restore"]
    others = [*restore["ceilings"].values(), restore["milvus_lite_own_ingest"]]
    assert [run["rows"] for side in others for run in side["runs"]] == [3000, 3000, 3000]
    assert 0 < doc["figures"]["milvus_restore_rows_time_ratio"]["floor_ratio"]
    assert doc["cases"]["incremental"]["incremental"]["mode"] == "diff"
    assert doc["figures"]["milvus_top10_overlap"]["value"] > 0.9
    assert list(tmp_path.glob("vecdr-milvusbench-*")) == []  # the work folder is removed


def test_quick_benchmark_on_a_server_leaves_nothing_there(tmp_path: Path) -> None:
    """``--server``: the same figures measured on a Milvus server (here a milvus-lite server
    process), every collection the run made dropped at the end."""
    from vecdr.testing.milvus import start

    server = start(tmp_path / "served.db")
    client = server.client()
    try:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema()
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=4)
        client.create_collection("bystander", schema=schema)  # someone else's: left alone
        out = tmp_path / "server-milvus.json"
        proc = subprocess.run(
            [sys.executable, str(ROOT / "benchmarks" / "milvus.py"), "--quick", "--out", str(out),
             "--workdir", str(tmp_path), "--server", f"milvus://127.0.0.1:{server.port}"],
            capture_output=True, text=True, timeout=600, cwd=ROOT,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        doc = json.loads(out.read_text())
        assert doc["config"]["milvus"].startswith(f"the server milvus://127.0.0.1:{server.port}")
        restore = doc["cases"]["restore"]
        assert "milvus_lite_own_ingest" not in restore  # Milvus Lite's embedded API: not on a server
        assert restore["vecdr_restore"]["runs"][0]["rows"] == 3000
        assert doc["figures"]["milvus_top10_overlap"]["value"] > 0.9
        assert client.list_collections() == ["bystander"]
    finally:
        server.stop()
