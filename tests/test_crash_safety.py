"""Crash safety by fault injection: a snapshot that dies anywhere loses nothing.

- A snapshot dies at every store operation in turn (before or after it takes
  effect), on memory, local disk and S3: the snapshot list is what it was (or has
  the new snapshot, complete, when death came after the commit point), every
  earlier snapshot restores bit for bit, ``verify --read-data`` finds nothing worse
  than unreferenced objects, and the next snapshot succeeds.
- A real ``vecdr snapshot`` process is killed with SIGKILL at 20 moments spread
  over its run: the same guarantees.
- 16 writers snapshot into one repository at once: every commit is linear, none is
  lost or duplicated, every snapshot restores.
- Bytes damaged on the way are read again (and the event logged); two segment
  files swapped at rest are named by verify and refused by restore.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.errors import IntegrityError
from vecdr.repository import Repository
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.faults import CorruptOnceStore, CountingStore, Crash, CrashingStore

D = 16
TABLE = np.random.default_rng(5).standard_normal((20_000, D)).astype(np.float32)
VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")


def index_of(ids: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(TABLE[ids], ids)
    return index


def states() -> list[faiss.Index]:
    """Three states of one collection: a full snapshot, then changes (deletes, inserts, updates)."""
    ids = np.arange(3000)
    second = np.concatenate([ids[100:], np.arange(10_000, 10_150)])
    third = np.concatenate([second[50:], np.arange(12_000, 12_040)])
    updated = index_of(third)
    updated.remove_ids(third[:30])
    updated.add_with_ids(TABLE[third[:30]] * 2, third[:30])  # 30 vectors overwritten
    return [index_of(ids), index_of(second), updated]


@pytest.fixture(params=["memory", "local", "s3"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Makes a new, empty repository on the store under test each time it is called."""
    if request.param == "s3":
        s3 = request.getfixturevalue("s3")
        bucket = s3.make_bucket()
        return lambda: vecdr.init(f"s3://{bucket}/{uuid.uuid4().hex[:8]}", s3.storage_options())
    if request.param == "memory":
        return lambda: vecdr.init(f"memory://crash-{uuid.uuid4().hex}")
    return lambda: vecdr.init(tmp_path / uuid.uuid4().hex[:8])


def check_survivors(repo: Repository, expected: dict[str, Any]) -> None:
    for snapshot, rows in expected.items():
        assert_same_rows(faiss_rows(vecdr.restore_index(repo, snapshot)), rows)
    report = vecdr.verify(repo, read_data=True)
    assert report.ok, report.errors  # unreferenced objects are allowed, errors are not


@pytest.mark.fault("snapshot dies at a store operation (after={after})")
@pytest.mark.parametrize("after", [False, True], ids=["dies-before", "dies-after"])
def test_a_snapshot_that_dies_at_any_store_operation_loses_nothing(after: bool, fresh: Any, cases: Any) -> None:
    first, second, third = states()
    # How many mutations does the incremental snapshot make? Count them once.
    probe = fresh()
    vecdr.snapshot(probe, first, collection="c")
    vecdr.snapshot(probe, second, collection="c")
    counting = CountingStore(probe.store)
    vecdr.snapshot(Repository(counting, probe.config), third, collection="c")
    total = len(counting.mutations)
    kinds = [key.split("/", 1)[0] for _, key in counting.mutations]
    assert set(kinds) == {"locks", "segments", "artifacts", "manifests", "commits"}, counting.mutations
    commit_at = kinds.index("commits") + 1  # the commit point's place among the mutations
    cases.plan(total)
    for k in range(1, total + 1):
        repo = fresh()
        done = {vecdr.snapshot(repo, first, collection="c").snapshot: faiss_rows(first),
                vecdr.snapshot(repo, second, collection="c").snapshot: faiss_rows(second)}
        before = [c.snapshot for c in repo.commits()]
        dying = CrashingStore(repo.store, at=k, after=after)
        with pytest.raises(Crash):
            vecdr.snapshot(Repository(dying, repo.config), third, collection="c")
        op, key = dying.crashed or ("", "")
        now = [c.snapshot for c in repo.commits()]
        if k > commit_at or (k == commit_at and after):
            # Died after the commit point (releasing its lock): the snapshot exists, whole.
            assert now[:-1] == before and len(now) == len(before) + 1, (op, key)
            done[now[-1]] = faiss_rows(third)
        else:
            assert now == before, (k, op, key)
        check_survivors(repo, done)
        # The next snapshot succeeds (a dead writer's shared lock does not block writers).
        again = vecdr.snapshot(repo, third, collection="c")
        assert again.parent == now[-1]
        assert_same_rows(faiss_rows(vecdr.restore_index(repo, again.snapshot)), faiss_rows(third))
        cases.ok()


@pytest.mark.fault("vecdr snapshot process killed (SIGKILL)", store="local")
def test_a_snapshot_process_killed_at_20_moments_loses_nothing(tmp_path: Path, cases: Any) -> None:
    assert VECDR, "the vecdr console script is not installed"
    first, second, _ = states()
    big = index_of(np.arange(20_000))  # enough work that the kills land inside it
    faiss.write_index(big, str(tmp_path / "live.faiss"))
    repo = vecdr.init(tmp_path / "repo")
    done = {vecdr.snapshot(repo, first, collection="c").snapshot: faiss_rows(first),
            vecdr.snapshot(repo, second, collection="c").snapshot: faiss_rows(second)}
    env = {k: v for k, v in os.environ.items() if k not in ("VECDR_REPOSITORY", "VECDR_DEBUG")}
    cmd = [VECDR, "snapshot", str(tmp_path / "repo"), f"faiss:{tmp_path / 'live.faiss'}", "-c", "c", "--mode", "full"]
    subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)
    done[repo.commits()[-1].snapshot] = faiss_rows(big)
    # Timed as the killed runs go: with the segments already stored (a full snapshot
    # re-checks them instead of writing them), the shorter of two runs.
    whole = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env, timeout=120)
        whole = min(whole, time.perf_counter() - t0)
        done[repo.commits()[-1].snapshot] = faiss_rows(big)
    outcomes = []
    cases.plan(20)
    for i in range(1, 21):
        before = [c.snapshot for c in repo.commits()]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        time.sleep(whole * i / 21)
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        now = [c.snapshot for c in repo.commits()]
        assert now[: len(before)] == before and len(now) - len(before) in (0, 1)
        if len(now) > len(before):
            done[now[-1]] = faiss_rows(big)
        outcomes.append(proc.returncode)
        for snapshot, rows in done.items():
            assert_same_rows(faiss_rows(vecdr.restore_index(repo, snapshot)), rows)
        cases.ok()
    assert outcomes.count(-signal.SIGKILL) >= 15, outcomes  # the kills landed while it worked
    check_survivors(repo, done)
    final = vecdr.snapshot(repo, index_of(np.arange(500)), collection="c")
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, final.snapshot)), faiss_rows(index_of(np.arange(500))))


@pytest.mark.fault("16 writers at once (threads)")
def test_16_writers_at_once_commit_linearly(fresh: Any, cases: Any) -> None:
    repo = fresh()
    writers = 16
    indexes = [index_of(np.arange(200) + 1000 * i) for i in range(writers)]
    barrier = threading.Barrier(writers)
    results: list[Any] = [None] * writers

    def run(i: int) -> None:
        barrier.wait(timeout=60)
        try:
            results[i] = vecdr.snapshot(repo, indexes[i], collection=f"c{i % 4}")
        except BaseException as exc:  # noqa: BLE001 — reported below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert all(isinstance(r, vecdr.SnapshotResult) for r in results), results
    commits = repo.commits()
    assert [c.seq for c in commits] == list(range(1, writers + 1))
    assert sorted(c.snapshot for c in commits) == sorted(r.snapshot for r in results)
    cases.plan(writers)
    for i, r in enumerate(results):
        assert_same_rows(faiss_rows(vecdr.restore_index(repo, r.snapshot)), faiss_rows(indexes[i]))
        cases.ok()


@pytest.mark.fault("16 writers at once (processes)", store="local")
def test_16_writer_processes_on_local_disk(tmp_path: Path) -> None:
    assert VECDR
    repo = vecdr.init(tmp_path / "repo")
    for i in range(16):
        faiss.write_index(index_of(np.arange(100) + 1000 * i), str(tmp_path / f"i{i}.faiss"))
    env = {k: v for k, v in os.environ.items() if k not in ("VECDR_REPOSITORY", "VECDR_DEBUG")}
    procs = [subprocess.Popen([VECDR, "snapshot", str(tmp_path / "repo"), f"faiss:{tmp_path / f'i{i}.faiss'}",
                               "-c", f"c{i % 3}"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
             for i in range(16)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    commits = repo.commits()
    assert [c.seq for c in commits] == list(range(1, 17)) and len({c.snapshot for c in commits}) == 16
    assert vecdr.verify(repo, read_data=True).ok


@pytest.mark.fault("bytes damaged on the first read", store="local")
def test_bytes_damaged_on_the_way_are_read_again_and_logged(
    repo: Repository, caplog: pytest.LogCaptureFixture
) -> None:
    first, second, _ = states()
    vecdr.snapshot(repo, first, collection="c")
    snap = vecdr.snapshot(repo, second, collection="c")
    flaky = CorruptOnceStore(repo.store, lambda key: key.startswith(("segments/", "manifests/", "artifacts/")))
    with caplog.at_level(logging.WARNING, logger="vecdr"):
        restored = vecdr.restore_index(Repository(flaky, repo.config), snap.snapshot)
    assert_same_rows(faiss_rows(restored), faiss_rows(second))
    assert flaky.corrupted and any(k.startswith("segments/") for k in flaky.corrupted)
    logged = " ".join(r.getMessage() for r in caplog.records)
    for key in flaky.corrupted:
        assert key in logged
    assert "second read was intact" in logged


@pytest.mark.fault("two segment files swapped", store="local")
def test_two_segment_files_swapped_are_named_and_refused(repo: Repository) -> None:
    first, second, _ = states()
    vecdr.snapshot(repo, first, collection="c")
    snap = vecdr.snapshot(repo, second, collection="c")
    a, b = sorted(repo.store.list("segments"))[:2]
    pa_, pb = Path(repo.store.local_path(a)), Path(repo.store.local_path(b))
    data_a, data_b = pa_.read_bytes(), pb.read_bytes()
    pa_.write_bytes(data_b)
    pb.write_bytes(data_a)
    report = vecdr.verify(repo, read_data=True)
    assert {p.object for p in report.errors} == {a, b}
    with pytest.raises(IntegrityError) as caught:
        vecdr.restore_index(repo, snap.snapshot)
    assert caught.value.path in (a, b)
