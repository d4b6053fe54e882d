"""Snapshots of a FAISS index that the application keeps changing.

Writers log every operation they make; each snapshot taken during the writes must
restore to the state after one prefix of that log (for a saved file: one of the
states it was saved in), and the snapshot after the writers stop to exactly the
final state. A journal is never trimmed past what a snapshot holds, and a damaged
one is an error, never a silent loss.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np
import pytest

import vecdr
from test_drill import _Warner
from vecdr.errors import JournalDamagedError
from vecdr.faiss import TrackedIndex

D = 8
IDS = 400  # ids the writers draw from


def _state(index: faiss.Index) -> dict[int, bytes]:
    """id -> vector bytes of a restored or live IDMap2 index."""
    ids = faiss.vector_to_array(index.id_map)
    vectors = index.index.reconstruct_n(0, index.ntotal) if index.ntotal else np.empty((0, D), np.float32)
    return {int(i): v.tobytes() for i, v in zip(ids, vectors, strict=True)}


def _apply(state: dict[int, bytes], op: list) -> None:
    kind, ids = op[0], op[1]
    if kind == "remove":
        for i in ids:
            state.pop(i, None)
    else:
        for i, v in zip(ids, op[2], strict=True):
            state[i] = np.asarray(v, np.float32).tobytes()


def _prefix_states(ops: list[list]) -> list[dict[int, bytes]]:
    """The state after each prefix of ``ops`` (index k: after k operations)."""
    state: dict[int, bytes] = {}
    out = [dict(state)]
    for op in ops:
        _apply(state, op)
        out.append(dict(state))
    return out


def _random_op(rng: np.random.Generator, index: TrackedIndex) -> list:
    ids = rng.choice(IDS, size=int(rng.integers(1, 6)), replace=False).astype(np.int64)
    vectors = rng.standard_normal((len(ids), D)).astype(np.float32)
    kind = ["upsert", "upsert", "remove"][int(rng.integers(3))]
    if kind == "remove":
        index.remove_ids(ids)
        return ["remove", ids.tolist()]
    index.upsert(vectors, ids)
    return ["upsert", ids.tolist(), vectors.tolist()]


@pytest.mark.fault("snapshot of a TrackedIndex changed by a writer thread")
def test_snapshots_of_a_tracked_index_under_a_busy_writer_are_points_in_its_history(
    repo: vecdr.Repository, tmp_path: Path, cases
) -> None:
    index = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), tmp_path / "live.journal")
    ops: list[list] = []
    stop = threading.Event()
    rng = np.random.default_rng(5)

    def writer() -> None:
        while not stop.is_set():  # busy: no pause between operations
            ops.append(_random_op(rng, index))

    thread = threading.Thread(target=writer)
    thread.start()
    taken = []
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline or len(taken) < 6:
            taken.append(vecdr.snapshot(repo, index, collection="live").snapshot)
    finally:
        stop.set()
        thread.join()
    final = vecdr.snapshot(repo, index, collection="live")
    assert final.mode == "tracked"
    states = _prefix_states(ops)
    by_key = {frozenset(s.items()): k for k, s in enumerate(states)}
    cases.plan(len(taken) + 1)
    last = -1
    for snap in taken:
        restored = _state(vecdr.restore_index(repo, snap))
        k = by_key.get(frozenset(restored.items()))
        assert k is not None, f"snapshot {snap} holds a state the index never had"
        assert k >= last  # later snapshots hold later points
        last = k
        cases.ok()
    assert _state(vecdr.restore_index(repo, final.snapshot)) == states[-1] == _state(index.index)
    cases.ok()
    # The stored rows match their stored row hashes: a diff on top finds nothing changed.
    again = vecdr.snapshot(repo, index, collection="live", mode="diff")
    assert (again.added, again.changed, again.deleted) == (0, 0, 0)


APP = r"""
import json, sys, time
import faiss, numpy as np
from vecdr.faiss import TrackedIndex

path, log, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
D, IDS = 8, 400
rng = np.random.default_rng(11)
index = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), path + ".journal")
with open(log, "w") as out:
    def record(entry):
        out.write(json.dumps(entry) + "\n")
        out.flush()
    done, next_save = 0, time.monotonic()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ids = rng.choice(IDS, size=int(rng.integers(1, 6)), replace=False).astype(np.int64)
        if rng.integers(3) == 2:
            index.remove_ids(ids)
            record(["remove", ids.tolist()])
        else:
            vectors = rng.standard_normal((len(ids), D)).astype(np.float32)
            index.upsert(vectors, ids)
            record(["upsert", ids.tolist(), vectors.tolist()])
        done += 1
        if time.monotonic() >= next_save:  # saves every 0.05-0.3 s
            index.save(path)
            record(["saved", done])
            next_save = time.monotonic() + float(rng.uniform(0.05, 0.3))
    index.save(path)
    record(["saved", done])
"""


@pytest.mark.fault("snapshot of a FAISS file an application process keeps saving")
def test_snapshots_of_a_file_an_application_keeps_saving_hold_saved_states(
    repo: vecdr.Repository, tmp_path: Path, cases
) -> None:
    path = tmp_path / "live.faiss"
    log = tmp_path / "ops.jsonl"
    app = subprocess.Popen([sys.executable, "-c", APP, str(path), str(log), "4"])
    taken = []
    try:
        while app.poll() is None:
            if path.exists():
                taken.append(vecdr.snapshot(repo, f"faiss:{path}", collection="live").snapshot)
            else:
                time.sleep(0.05)
    finally:
        app.wait(timeout=60)
    assert app.returncode == 0
    final = vecdr.snapshot(repo, f"faiss:{path}", collection="live")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    ops = [e for e in entries if e[0] != "saved"]
    states = _prefix_states(ops)
    saved = {frozenset(states[e[1]].items()): e[1] for e in entries if e[0] == "saved"}
    assert len(taken) >= 3 and len(saved) >= 5
    cases.plan(len(taken) + 1)
    last = -1
    for snap in taken:
        k = saved.get(frozenset(_state(vecdr.restore_index(repo, snap)).items()))
        assert k is not None and k >= last, f"snapshot {snap} holds a state the file was never saved in"
        last = k
        cases.ok()
    live = _state(faiss.read_index(str(path)))
    assert _state(vecdr.restore_index(repo, final.snapshot)) == live == states[-1]
    cases.ok()


@pytest.mark.fault("journal holds changes the saved file does not")
def test_unsaved_changes_stay_in_the_journal_for_the_next_snapshot(repo: vecdr.Repository, tmp_path: Path) -> None:
    path = tmp_path / "app.faiss"
    rng = np.random.default_rng(2)
    index = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), f"{path}.journal")
    index.add_with_ids(rng.standard_normal((100, D)).astype(np.float32), np.arange(100))
    index.save(path)
    assert vecdr.snapshot(repo, f"faiss:{path}").mode == "full"
    new5 = rng.standard_normal((1, D)).astype(np.float32)
    index.upsert(new5, np.array([5]))  # neither saved ...
    index.add_with_ids(rng.standard_normal((1, D)).astype(np.float32), np.array([500]))
    stale = vecdr.snapshot(repo, f"faiss:{path}")  # ... so this snapshot holds the old file
    assert _state(vecdr.restore_index(repo, stale.snapshot)) == _state(faiss.read_index(str(path)))
    index.remove_ids(np.array([500]))
    index.save(path)
    later = vecdr.snapshot(repo, f"faiss:{path}")
    assert later.mode == "tracked" and later.changed == 1
    restored = _state(vecdr.restore_index(repo, later.snapshot))
    assert restored[5] == new5.tobytes() and 500 not in restored
    assert restored == _state(index.index)


@pytest.mark.fault("FAISS file saved without TrackedIndex.save beside a journal")
def test_a_file_saved_behind_the_journals_back_is_compared_and_the_journal_kept(
    repo: vecdr.Repository, tmp_path: Path
) -> None:
    path = tmp_path / "app.faiss"
    rng = np.random.default_rng(3)
    index = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), f"{path}.journal")
    index.add_with_ids(rng.standard_normal((50, D)).astype(np.float32), np.arange(50))
    index.save(path)
    vecdr.snapshot(repo, f"faiss:{path}")
    index.upsert(rng.standard_normal((1, D)).astype(np.float32), np.array([7]))
    faiss.write_index(index.index, str(path))  # not through the journal
    os.utime(path, ns=(time.time_ns() - 5 * 10**9,) * 2)
    logs_before = sorted(p.name for p in Path(f"{path}.journal").glob("*.log") if p.stat().st_size)
    with pytest.warns(UserWarning, match="not saved through TrackedIndex.save"):
        snap = vecdr.snapshot(repo, f"faiss:{path}", reporter=_Warner())
    assert snap.mode == "diff" and snap.changed == 1
    assert sorted(p.name for p in Path(f"{path}.journal").glob("*.log") if p.stat().st_size) == logs_before


@pytest.mark.fault("damaged record in the middle of a FAISS journal")
def test_a_damaged_journal_is_an_error_until_a_diff_snapshot(repo: vecdr.Repository, tmp_path: Path) -> None:
    journal = tmp_path / "j"
    index = TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), journal)
    rng = np.random.default_rng(4)
    index.add_with_ids(rng.standard_normal((50, D)).astype(np.float32), np.arange(50))
    vecdr.snapshot(repo, index, collection="c")
    for i in range(3):
        index.upsert(rng.standard_normal((1, D)).astype(np.float32), np.array([i]))
    log = max((p for p in journal.glob("*.log") if p.stat().st_size), key=lambda p: p.name)
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF  # inside the first of three records
    log.write_bytes(bytes(data))
    for mode in ("auto", "tracked"):
        with pytest.raises(JournalDamagedError, match="--mode diff"):
            vecdr.snapshot(repo, index, collection="c", mode=mode)
    assert log.read_bytes() == bytes(data)  # nothing trimmed
    fixed = vecdr.snapshot(repo, index, collection="c", mode="diff")
    assert fixed.changed == 3
    index.remove_ids(np.array([10]))
    assert vecdr.snapshot(repo, index, collection="c").mode == "tracked"
    assert _state(vecdr.restore_index(repo, "latest")) == _state(index.index)
    # The CLI says the same in one line.
    from test_cli import fails, run

    index.upsert(rng.standard_normal((1, D)).astype(np.float32), np.array([11]))
    path = tmp_path / "c.faiss"
    index.save(path)
    log = max((p for p in journal.glob("*.log") if p.stat().st_size), key=lambda p: p.name)
    data = bytearray(log.read_bytes())
    data[20] ^= 0xFF
    log.write_bytes(bytes(data) + bytes(data))  # a damaged record followed by another
    fails(run("snapshot", str(repo.url), f"faiss:{path}?journal={journal}", "-c", "c"), "--mode diff")


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    journal = vecdr.faiss.Journal(tmp_path / "j", D)
    journal.upsert(np.array([1]), np.ones((1, D), np.float32))
    journal.upsert(np.array([2]), np.ones((1, D), np.float32))
    log = next(p for p in (tmp_path / "j").glob("*.log") if p.stat().st_size)
    log.write_bytes(log.read_bytes()[:-7])  # a crash in the middle of the second append
    state = vecdr.faiss.Journal(tmp_path / "j", D).read()
    assert state.upsert_ids.tolist() == [1]

