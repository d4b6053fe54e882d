"""The benchmark scripts run end to end in their quick modes (a check of the harness, not of speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
