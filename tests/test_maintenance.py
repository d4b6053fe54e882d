"""forget, prune and compact: retention never loses a kept snapshot, GC never deletes what is used."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import vecdr
from vecdr.engines.forget import PERIODS, Retention, decide, parse_duration
from vecdr.errors import IntegrityError, LockedError, SnapshotNotFoundError, UsageError
from vecdr.repository import Repository
from vecdr.repository.locks import Lock, list_locks
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.faults import Crash, CrashingStore

D = 8


def index_of(ids: np.ndarray, seed: int) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(seed).standard_normal((len(ids), D)).astype(np.float32), ids)
    return index


def stored_keys(repo: Repository) -> set[str]:
    return {k for prefix in ("segments", "artifacts", "manifests") for k in repo.store.list(prefix)}


def used_keys(repo: Repository) -> set[str]:
    keys = set()
    for commit in repo.commits():
        keys.add(commit.manifest.key)
        keys.update(ref.key for ref in repo.load_manifest(commit).referenced())
    return keys


# -- retention policies ----------------------------------------------------------------------


def test_durations() -> None:
    assert parse_duration("7d") == timedelta(days=7)
    assert parse_duration("1y6m") == timedelta(days=365 + 180)
    assert parse_duration("3d12h") == timedelta(days=3, hours=12)
    for bad in ("", "7", "d", "1w", "-1d", "1h2d"):
        with pytest.raises(UsageError):
            parse_duration(bad)


def oracle(times: list[datetime], tags: list[tuple[str, ...]], policy: Retention) -> set[int]:
    """Which of one collection's snapshots (oldest first) the policy keeps, computed plainly."""
    order = sorted(range(len(times)), key=lambda i: i, reverse=True)  # newest first: later index is newer
    kept = set(order[: policy.last])
    for period, key in PERIODS.items():
        buckets: dict[tuple[int, ...], int] = {}
        for i in order:
            buckets.setdefault(key(times[i]), i)  # the newest of each period
        newest_periods = sorted(buckets.values(), reverse=True)[: getattr(policy, period)]
        kept.update(newest_periods)
    if policy.within is not None and times:
        kept.update(i for i in order if times[i] >= max(times) - policy.within)
    kept.update(i for i in order if set(tags[i]) & set(policy.tags))
    return kept


policies = st.builds(
    Retention,
    last=st.integers(0, 4), hourly=st.integers(0, 3), daily=st.integers(0, 3), weekly=st.integers(0, 2),
    monthly=st.integers(0, 2), yearly=st.integers(0, 1),
    within=st.one_of(st.none(), st.sampled_from([timedelta(hours=2), timedelta(days=1), timedelta(days=10)])),
    tags=st.sampled_from([(), ("keep",)]),
)
# Gaps between snapshots from minutes to weeks, so every period boundary is crossed.
gaps = st.lists(st.sampled_from([timedelta(minutes=20), timedelta(hours=3), timedelta(hours=30),
                                 timedelta(days=8), timedelta(days=40)]), min_size=1, max_size=9)


@pytest.mark.fault("forget + prune by a random policy over a random history", store="memory")
@settings(max_examples=60)
@given(gaps=gaps, policy=policies, data=st.data())
def test_any_policy_over_any_history_keeps_what_it_should_and_kept_snapshots_restore_exactly(
    gaps: list[timedelta], policy: Retention, data: st.DataObject
) -> None:
    start = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
    times = [start + sum(gaps[: i + 1], timedelta()) for i in range(len(gaps))]
    collections = data.draw(st.lists(st.sampled_from(["a", "b"]), min_size=len(times), max_size=len(times)))
    tags = [("keep",) if t else () for t in data.draw(st.lists(st.booleans(), min_size=len(times),
                                                               max_size=len(times)))]
    repo = vecdr.init(f"memory://forget-{uuid.uuid4().hex}")
    contents: dict[str, Any] = {}
    ids = {"a": np.arange(40), "b": np.arange(1000, 1040)}
    for i, (when, name) in enumerate(zip(times, collections, strict=True)):
        # Each snapshot of a collection changes a few rows: consecutive snapshots share segments.
        ids[name] = np.concatenate([ids[name][3:], np.arange(5000 + 10 * i, 5000 + 10 * i + 3)])
        index = index_of(ids[name], seed=i)
        stamp = when.isoformat().replace("+00:00", "Z")
        with mock.patch("vecdr.engines.snapshot.utcnow", return_value=stamp):
            snap = vecdr.snapshot(repo, index, collection=name, tags=tags[i])
        contents[snap.snapshot] = faiss_rows(index)
    commits = repo.commits()
    expected = set()
    for name in ("a", "b"):
        mine = [i for i, c in enumerate(commits) if c.collection == name]
        keep = oracle([times[i] for i in mine], [tags[i] for i in mine], policy)
        expected |= {commits[mine[k]].snapshot for k in keep}
    assert {d.commit.snapshot for d in decide(commits, policy) if d.keep} == expected

    if policy.empty:
        with pytest.raises(UsageError):
            vecdr.forget(repo, keep_last=0)
        return
    kwargs = dict(keep_last=policy.last, keep_hourly=policy.hourly, keep_daily=policy.daily,
                  keep_weekly=policy.weekly, keep_monthly=policy.monthly, keep_yearly=policy.yearly,
                  keep_within=policy.within, keep_tags=policy.tags)
    if policy.tags and not any(tags):  # a --keep-tag that no snapshot carries is refused, nothing forgotten
        with pytest.raises(UsageError, match="keep-tag"):
            vecdr.forget(repo, **kwargs)  # type: ignore[arg-type]
        assert repo.commits() == commits
        return
    result = vecdr.forget(repo, **kwargs)  # type: ignore[arg-type]
    assert {d.commit.snapshot for d in result.kept} == expected
    assert {c.snapshot for c in repo.commits()} == expected
    vecdr.prune(repo, grace=timedelta(0))
    assert stored_keys(repo) == used_keys(repo)  # every object of a forgotten snapshot alone is gone
    for snapshot in expected:
        restored = vecdr.restore_index(repo, snapshot, collection=repo.load_manifest(
            next(c for c in repo.commits() if c.snapshot == snapshot)).collection)
        assert_same_rows(faiss_rows(restored), contents[snapshot])
    assert vecdr.verify(repo, read_data=True).ok


def test_forget_by_id_dry_run_and_bad_arguments(repo: Repository) -> None:
    snaps = [vecdr.snapshot(repo, index_of(np.arange(50) + i, i), collection="c").snapshot for i in range(3)]
    dry = vecdr.forget(repo, [snaps[0][:8]], dry_run=True)
    assert [d.commit.snapshot for d in dry.removed] == [snaps[0]]
    assert len(repo.commits()) == 3
    vecdr.forget(repo, [snaps[0]])
    assert [c.snapshot for c in repo.commits()] == snaps[1:]
    with pytest.raises(UsageError, match="either"):
        vecdr.forget(repo)
    with pytest.raises(UsageError, match="either"):
        vecdr.forget(repo, [snaps[1]], keep_last=1)
    with pytest.raises(SnapshotNotFoundError):
        vecdr.forget(repo, ["feedbeef"])
    with pytest.raises(UsageError):
        vecdr.forget(repo, keep_within="forever")
    assert [c.snapshot for c in repo.commits()] == snaps[1:]
    assert list_locks(repo.store) == []


# -- prune --------------------------------------------------------------------------------------


#: One vector per id, the same in every snapshot that holds the id.
TABLE = np.random.default_rng(9).standard_normal((4000, D)).astype(np.float32)


def history(repo: Repository, n: int = 4) -> list[tuple[str, Any]]:
    """``n`` snapshots of one collection, each deleting 20 rows and adding 20; their ids and contents."""
    out = []
    ids = np.arange(300)
    for i in range(n):
        ids = np.concatenate([ids[20:], np.arange(1000 + 100 * i, 1000 + 100 * i + 20)])
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
        index.add_with_ids(TABLE[ids], ids)
        out.append((vecdr.snapshot(repo, index, collection="c").snapshot, faiss_rows(index)))
    return out


def test_prune_keeps_young_objects_then_reclaims_them(repo: Repository) -> None:
    snaps = history(repo)
    vecdr.forget(repo, keep_last=1)
    before = stored_keys(repo)
    young = vecdr.prune(repo)  # default grace: 24 hours
    assert young.deleted == [] and set(young.kept_young) == before - used_keys(repo) and young.kept_young
    dry = vecdr.prune(repo, grace="0h", dry_run=True)
    assert set(dry.deleted) == before - used_keys(repo) and dry.deleted_bytes > 0
    assert stored_keys(repo) == before
    done = vecdr.prune(repo, grace="0h")
    assert set(done.deleted) == set(dry.deleted)
    assert stored_keys(repo) == used_keys(repo)
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, snaps[-1][0])), snaps[-1][1])


@pytest.mark.fault("prune with a live manifest that does not load", store="local")
def test_prune_refuses_when_a_live_manifest_does_not_load(repo: Repository) -> None:
    snaps = history(repo, 3)
    vecdr.forget(repo, [snaps[0][0]])
    manifest = Path(repo.store.local_path(f"manifests/{snaps[1][0]}.json"))
    manifest.write_bytes(manifest.read_bytes().replace(b'"rows"', b'"rowz"', 1))
    before = stored_keys(repo)
    with pytest.raises(IntegrityError, match="refusing to prune"):
        vecdr.prune(repo, grace="0h")
    assert stored_keys(repo) == before
    assert list_locks(repo.store) == []


@pytest.mark.fault("prune dies at a store operation (after={after})", store="local")
@pytest.mark.parametrize("after", [False, True], ids=["before", "after"])
def test_a_prune_that_dies_at_any_delete_loses_nothing_and_a_rerun_finishes(
    after: bool, tmp_path: Path, cases: Any
) -> None:
    import shutil

    from vecdr.repository.locks import unlock

    origin = vecdr.init(tmp_path / "origin")
    snaps = history(origin, 5)
    vecdr.forget(origin, keep_last=2)
    doomed = vecdr.prune(origin, grace="0h", dry_run=True).deleted
    assert len(doomed) >= 5  # manifests and deletion files of the three forgotten snapshots
    # Mutations of a prune: its lock, each delete, the lock's removal. Die at each one.
    cases.plan(len(doomed) + 2)
    for k in range(1, len(doomed) + 3):
        shutil.copytree(tmp_path / "origin", tmp_path / f"k{k}")
        repo = vecdr.open_repository(tmp_path / f"k{k}")
        with pytest.raises(Crash):
            vecdr.prune(Repository(CrashingStore(repo.store, at=k, after=after), repo.config), grace="0h")
        for snapshot, rows in snaps[-2:]:
            assert_same_rows(faiss_rows(vecdr.restore_index(repo, snapshot)), rows)
        unlock(repo.store, all_locks=True)  # the dead prune's lock: `vecdr unlock --all`
        vecdr.prune(repo, grace="0h")
        assert stored_keys(repo) == used_keys(repo)
        report = vecdr.verify(repo, read_data=True)
        assert report.ok and report.unreferenced == []
        cases.ok()


def test_prune_waits_for_running_snapshots_and_snapshots_wait_for_prune(repo: Repository) -> None:
    history(repo, 2)
    with Lock(repo.store, "shared", "snapshot of c"):
        with pytest.raises(LockedError, match=r"shared lock .*snapshot of c"):
            vecdr.prune(repo, grace="0h")
    with Lock(repo.store, "exclusive", "prune"), pytest.raises(LockedError, match="prune"):
        vecdr.snapshot(repo, index_of(np.arange(10), 1), collection="c")
    assert len(repo.commits()) == 2


@pytest.mark.fault("prune racing a snapshot in flight", store="local")
def test_fresh_objects_of_a_snapshot_in_flight_survive_a_prune(repo: Repository) -> None:
    """A writer whose lock is gone (expired, broken) is still covered by the grace period."""
    history(repo, 2)
    started, release = threading.Event(), threading.Event()

    class Paused(CrashingStore):
        def write(self, key: str, data: bytes | memoryview) -> None:
            if key.startswith("manifests/"):
                started.set()
                assert release.wait(30)
            self.inner.write(key, data)

    store = Paused(repo.store, at=10**9)
    in_flight = Repository(store, repo.config)
    fresh = index_of(np.arange(5000, 5400), 77)
    result: list[Any] = []
    writer = threading.Thread(target=lambda: result.append(vecdr.snapshot(in_flight, fresh, collection="c")))
    writer.start()
    assert started.wait(30)
    from vecdr.repository.locks import unlock

    unlock(repo.store, all_locks=True)  # as if its lock had expired
    pruned = vecdr.prune(repo)  # default grace
    assert pruned.deleted == [] and pruned.kept_young
    release.set()
    writer.join()
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, result[0].snapshot)), faiss_rows(fresh))


# -- compact ------------------------------------------------------------------------------------


def test_compact_rewrites_the_latest_snapshot_with_identical_content(repo: Repository) -> None:
    snaps = history(repo, 6)
    latest, rows = snaps[-1]
    before = repo.load_manifest(repo.commits()[-1])
    assert any(e.live < e.rows for e in before.segments) and len(before.segments) > 2
    result = vecdr.compact(repo)
    assert result.compacted == latest and result.rows == before.rows
    after = repo.load_manifest(repo.commits()[-1])
    assert after.parent == latest and after.stats["mode"] == "compact"
    assert all(e.live == e.rows and e.deletions is None for e in after.segments)
    assert len(after.segments) < len(before.segments)
    assert result.dead_rows_dropped == sum(e.rows - e.live for e in before.segments) > 0
    assert_same_rows(faiss_rows(vecdr.restore_index(repo)), rows)
    # Rows come back in the same order, so a rebuilt HNSW graph is the same.
    ordered = vecdr.restore_index(repo, result.snapshot)
    again = vecdr.restore_index(repo, latest)
    np.testing.assert_array_equal(faiss.vector_to_array(ordered.id_map), faiss.vector_to_array(again.id_map))
    with pytest.raises(UsageError, match="not the latest"):
        vecdr.compact(repo, snaps[0][0])
    vecdr.forget(repo, keep_last=1)
    vecdr.prune(repo, grace="0h")
    assert_same_rows(faiss_rows(vecdr.restore_index(repo)), rows)
    assert vecdr.verify(repo, read_data=True).ok
    nxt = vecdr.snapshot(repo, index_of(np.arange(10), 3), collection="c")
    assert nxt.parent == result.snapshot and nxt.deleted > 0
