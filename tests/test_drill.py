"""DR drills, recovery objectives, status and progressive recovery."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.engines.quality import exact_top_k, recall
from vecdr.engines.status import prometheus_text
from vecdr.errors import UsageError
from vecdr.faiss import TrackedIndex
from vecdr.format.quality import decode_quality
from vecdr.policy import TIERS, Objectives, load_policy, parse_seconds

D = 24
VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")
DATA = np.random.default_rng(3).standard_normal((6000, D)).astype(np.float32)


def hnsw(n: int = 4000) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexHNSWFlat(D, 16))
    index.add_with_ids(DATA[:n], np.arange(n) * 3 + 1)
    return index


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VECDR_REPOSITORY", "VECDR_DEBUG")}
    return subprocess.run([VECDR, *args], capture_output=True, text=True, env=env, timeout=300)


# -- objectives ----------------------------------------------------------------------------


def test_policy_tiers_overrides_and_order(tmp_path: Path) -> None:
    path = tmp_path / "vecdr.toml"
    path.write_text('''
repository = "/backups"
[collections.search]
tier = "mission-critical"
target = "faiss:/srv/search.faiss"
[collections.recs]
tier = "business-critical"
rpo = "30s"
min_recall = 0.9
[collections.logs]
tier = "archival"
priority = 0
[collections.plain]
rto = 90
''')
    policy = load_policy(path)
    assert policy.repository == "/backups"
    assert [c.name for c in policy.ordered()] == ["logs", "search", "recs", "plain"]
    assert policy.objectives("search") == TIERS["mission-critical"][0] == Objectives(60, 0, 0.98)
    assert policy.objectives("recs") == Objectives(300, 30, 0.9)
    assert policy.objectives("plain") == Objectives(90, None, None)
    assert policy.objectives("unknown") == Objectives()
    assert [parse_seconds(v) for v in ("45s", "5m", "1.5h", "1d", 12)] == [45, 300, 5400, 86400, 12]


@pytest.mark.parametrize(("text", "needle"), [
    ("[collections.a]\ntier = 'gold'", "tier 'gold'"),
    ("[collections.a]\nrto = 'soon'", "not a duration"),
    ("[collections.a]\nrpo = '-5s'", "not a duration"),
    ("[collections.a]\nmin_recall = 1.5", "between 0 and 1"),
    ("[collections.a]\nretention = 3", "unknown keys"),
    ("[collections.a]\npriority = 'high'", "whole number"),
    ("collections = 3", "[collections.NAME]"),
    ("this is not toml", "not valid TOML"),
])
def test_bad_policies_are_usage_errors(text: str, needle: str, tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(text)
    with pytest.raises(UsageError, match=needle.replace("[", r"\[")):
        load_policy(tmp_path / "p.toml")
    with pytest.raises(UsageError, match="no policy file"):
        load_policy(tmp_path / "missing.toml")


# -- quality samples -------------------------------------------------------------------------


def test_exact_top_k_and_recall_match_a_brute_force(repo: vecdr.Repository) -> None:
    flat = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    ids = np.arange(3000) * 7
    flat.add_with_ids(DATA[:3000], ids)
    vecdr.snapshot(repo, flat, collection="c")
    manifest = repo.load_manifest(repo.commits()[-1])
    queries = DATA[4000:4020]
    for metric in ("L2", "IP", "cosine"):
        got = exact_top_k(repo, manifest, queries, 10, metric)
        x = DATA[:3000]
        if metric == "L2":
            scores = ((queries[:, None, :] - x[None]) ** 2).sum(-1)
        elif metric == "IP":
            scores = -queries @ x.T
        else:
            scores = -(queries @ x.T) / np.linalg.norm(x, axis=1)[None]
        expected = [list(ids[np.argsort(row, kind="stable")[:10]]) for row in scores]
        assert got == expected, metric
    assert recall(got, expected, 10) == 1.0
    assert recall([row[:5] for row in expected], expected, 10) == 0.5


def test_snapshots_keep_a_quality_sample_by_default_and_as_asked(repo: vecdr.Repository) -> None:
    index = hnsw()
    first = vecdr.snapshot(repo, index, collection="c")
    manifest = repo.load_manifest(repo.commits()[-1])
    sample = decode_quality(repo.get(manifest.artifacts["quality"]))
    assert sample.queries.shape == (32, D) and sample.k == 10 and sample.metric == "L2"
    assert sample.answers is not None and all(len(a) == 10 for a in sample.answers)
    _, expected = index.search(sample.queries, 10)
    assert sample.answers == expected.tolist()  # what the live index answered
    vecdr.snapshot(repo, index, collection="c")  # later snapshots keep sampling
    assert "quality" in repo.load_manifest(repo.commits()[-1]).artifacts
    vecdr.snapshot(repo, index, collection="d", quality_sample=0)
    assert "quality" not in repo.load_manifest(repo.commits()[-1]).artifacts
    assert first.rows == 4000


# -- drills ---------------------------------------------------------------------------------


def test_a_drill_restores_measures_and_cleans_up(repo: vecdr.Repository, tmp_path: Path) -> None:
    index = hnsw()
    vecdr.snapshot(repo, index, collection="c")
    result = vecdr.drill(repo, objectives=Objectives(rto_seconds=120, rpo_seconds=3600, min_recall=0.95))
    assert result.passed, result.checks
    assert result.rows_restored == result.rows_expected == 4000
    assert set(result.rto_phases) == {"fetch_decode", "build", "load"}
    assert abs(sum(result.rto_phases.values()) - result.rto_seconds) < 0.05 * result.rto_seconds + 0.01
    assert 0 < result.rpo_seconds < 600
    # HNSW rebuilt from the same rows in the same order: the same graph, the same answers.
    assert result.queries == 32 and result.recall == result.source_recall and result.agreement == 1.0
    assert result.recall_ratio == 1.0 and 0.5 < result.recall <= 1.0
    assert not Path(result.target.removeprefix("faiss:")).exists()
    history = vecdr.drills(repo)
    assert [h["snapshot"] for h in history] == [result.snapshot] and history[0]["passed"] is True
    failed = vecdr.drill(repo, objectives=Objectives(rto_seconds=0.0001, rpo_seconds=0))
    assert not failed.passed
    assert {c.name for c in failed.checks if c.passed is False} == {"rto_seconds", "rpo_seconds"}
    assert [h["passed"] for h in vecdr.drills(repo, "c")] == [True, False]


def test_a_drill_judges_a_weaker_restored_index_against_the_live_one(repo: vecdr.Repository, tmp_path: Path) -> None:
    flat = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    flat.add_with_ids(DATA[:5000], np.arange(5000))
    vecdr.snapshot(repo, flat, collection="c")
    weak = vecdr.drill(repo, target=f"faiss:{tmp_path / 'weak.faiss'}?factory=IVF64,Flat",
                       objectives=Objectives(min_recall=0.99))
    assert weak.source_recall == 1.0  # the live index was exhaustive
    assert weak.recall is not None and weak.recall < 0.9  # IVF with one probe misses neighbours
    assert weak.recall_ratio == weak.recall and not weak.passed
    assert not (tmp_path / "weak.faiss").exists()


def test_a_drill_without_a_quality_sample_says_so(repo: vecdr.Repository) -> None:
    vecdr.snapshot(repo, hnsw(500), collection="c", quality_sample=0)
    with pytest.warns(UserWarning, match="keeps no quality sample"):
        result = vecdr.drill(repo, reporter=_Warner())
    assert result.recall is None and result.passed
    with pytest.warns(UserWarning):
        floor = vecdr.drill(repo, objectives=Objectives(min_recall=0.5), reporter=_Warner())
    assert not floor.passed  # a floor nothing measured can meet


class _Warner:
    def start(self, *args: Any, **kwargs: Any) -> None: ...
    def advance(self, amount: int = 1) -> None: ...
    def finish(self) -> None: ...
    def warn(self, message: str) -> None:
        import warnings

        warnings.warn(message, UserWarning, stacklevel=2)


def test_cli_drill_table_json_report_and_exit_status(repo: vecdr.Repository, tmp_path: Path) -> None:
    assert VECDR
    vecdr.snapshot(repo, hnsw(1500), collection="c")
    policy = tmp_path / "vecdr.toml"
    policy.write_text("[collections.c]\ntier = 'archival'\n")
    ok = cli("drill", str(repo.url), "--policy", str(policy), "--report", str(tmp_path / "drill.md"))
    assert ok.returncode == 0, ok.stderr
    assert "PASSED" in ok.stdout and "recall" in ok.stdout
    report = (tmp_path / "drill.md").read_text()
    assert "| rto seconds |" in report and "**PASSED**" in report
    bad = cli("drill", str(repo.url), "--policy", str(policy), "--rto", "1ms", "--json")
    assert bad.returncode == 2 and "not a duration" in bad.stderr  # a usage error
    failed = cli("drill", str(repo.url), "--policy", str(policy), "--rpo", "0s", "--json")
    assert failed.returncode == 1
    doc = json.loads(failed.stdout)
    assert doc["passed"] is False and {c["name"]: c["passed"] for c in doc["checks"]}["rpo_seconds"] is False
    listed = json.loads(cli("drills", str(repo.url), "--json").stdout)
    assert [d["passed"] for d in listed] == [True, False]


# -- status ---------------------------------------------------------------------------------


def test_status_reports_ages_pending_changes_and_writes_a_textfile(repo: vecdr.Repository, tmp_path: Path) -> None:
    tracked = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), tmp_path / "live.faiss.journal")
    tracked.add_with_ids(DATA[:300], np.arange(300))
    tracked.save(tmp_path / "live.faiss")
    vecdr.snapshot(repo, f"faiss:{tmp_path / 'live.faiss'}", collection="live")
    vecdr.snapshot(repo, hnsw(200), collection="other")
    policy = tmp_path / "vecdr.toml"
    policy.write_text(f"[collections.live]\nsource = 'faiss:{tmp_path / 'live.faiss'}'\nrpo = '1h'\n"
                      "[collections.other]\nrpo = '0s'\n[collections.planned]\ntier = 'operational'\n")
    rows = {r.collection: r for r in vecdr.status(repo, policy)}
    assert set(rows) == {"live", "other", "planned"}
    assert rows["live"].pending_changes == 0 and rows["live"].rpo_seconds == 0 and rows["live"].rpo_met
    assert rows["other"].pending_changes is None and rows["other"].rpo_met is False  # RPO 0 needs tracking
    assert rows["planned"].snapshots == 0 and rows["planned"].rpo_met is False
    tracked.add_with_ids(DATA[300:310], np.arange(300, 310))
    tracked.remove_ids(np.arange(5))
    tracked.save(tmp_path / "live.faiss")
    live = {r.collection: r for r in vecdr.status(repo, policy)}["live"]
    assert live.pending_changes == 15 and live.rpo_seconds == live.snapshot_age_seconds
    text = prometheus_text(list(rows.values()))
    assert 'vecdr_snapshot_age_seconds{collection="live"}' in text
    assert 'vecdr_rpo_met{collection="other"} 0' in text and "# TYPE vecdr_rpo_target_seconds gauge" in text
    proc = cli("status", str(repo.url), "--policy", str(policy), "--prometheus", str(tmp_path / "vecdr.prom"))
    assert proc.returncode == 1  # an RPO is missed
    assert 'vecdr_snapshots{collection="other"} 1' in (tmp_path / "vecdr.prom").read_text()


# -- progressive recovery -------------------------------------------------------------------


def test_recover_restores_in_priority_order_and_reports_each_rto(repo: vecdr.Repository, tmp_path: Path) -> None:
    indexes = {"search": hnsw(2000), "recs": hnsw(600), "logs": hnsw(300)}
    for name, index in indexes.items():
        vecdr.snapshot(repo, index, collection=name)
    (tmp_path / "busy.faiss").write_bytes(b"in the way")
    policy = tmp_path / "vecdr.toml"
    policy.write_text(f'''
repository = "{repo.url}"
[collections.logs]
tier = "archival"
target = "faiss:{tmp_path / 'busy.faiss'}"
[collections.search]
tier = "mission-critical"
target = "faiss:{tmp_path / 'search.faiss'}"
[collections.recs]
tier = "business-critical"
target = "faiss:{tmp_path / 'recs.faiss'}"
''')
    with pytest.warns(UserWarning, match="recovering 'logs' failed"):
        result = vecdr.recover(policy=policy)
    order = [c.collection for c in result.collections]
    assert order == ["search", "recs", "logs"]
    search, recs, logs = result.collections
    assert search.passed and recs.passed and search.rto_seconds < recs.rto_seconds
    assert logs.error is not None and "already exists" in logs.error and not result.passed
    for name in ("search", "recs"):
        restored = faiss.read_index(str(tmp_path / f"{name}.faiss"))
        assert restored.ntotal == indexes[name].ntotal
    forced = vecdr.recover(policy=policy, force=True)
    assert forced.passed
    proc = cli("recover", "--policy", str(policy), "--force", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [c["collection"] for c in json.loads(proc.stdout)["collections"]] == ["search", "recs", "logs"]
    missing = tmp_path / "no-target.toml"
    missing.write_text(f'repository = "{repo.url}"\n[collections.search]\ntier = "archival"\n')
    with pytest.raises(UsageError, match="without a target"):
        vecdr.recover(policy=missing)


# -- pgvector -------------------------------------------------------------------------------


@pytest.mark.parametrize("id_type", ["bigint", "uuid"])
def test_a_pgvector_drill_uses_a_scratch_table_beside_the_source(id_type: str, pg: Any, repo: vecdr.Repository) -> None:
    import uuid

    from vecdr.backends.pgvector.search import vector_literal

    def key(i: int) -> object:
        return i if id_type == "bigint" else str(uuid.UUID(int=i * 7919 + 1))

    with pg.connect() as conn:
        conn.execute(f"CREATE TABLE items (id {id_type} PRIMARY KEY, embedding vector({D}) NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO items VALUES (%s::{id_type}, %s::vector)",
                            [(key(i), vector_literal(DATA[i])) for i in range(1500)])
        conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops) "
                     "WITH (m = 8, ef_construction = 32)")
    snap = vecdr.snapshot(repo, pg.uri("items"))
    sample = decode_quality(repo.get(repo.load_manifest(repo.commits()[-1]).artifacts["quality"]))
    assert sample.metric == "cosine" and sample.answers is not None and len(sample.queries) == 32
    result = vecdr.drill(repo, objectives=Objectives(rto_seconds=300, min_recall=0.9))
    assert result.passed, result.checks
    assert result.target.startswith("postgresql://") and "vecdr_drill_" in result.target
    assert result.rows_restored == 1500 and result.snapshot == snap.snapshot
    assert result.source_recall is not None and result.recall_ratio is not None and result.recall_ratio > 0.9
    with pg.connect() as conn:
        left = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'vecdr_drill_%'").fetchone()[0]
        assert left == 0  # the scratch table is gone
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 1500
