"""A model-based test of snapshots: random upserts and deletes over a small id pool,
snapshots in diff mode (an index rebuilt from the model) and in tracked mode
(``vecdr.faiss.TrackedIndex``), and every snapshot taken so far must keep
restoring exactly the state it was taken of."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

import faiss
import fsspec
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

import vecdr
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 8
ID_POOL = 24
#: Vector "shapes" drawn by seed: few enough that identical re-upserts happen. Seeds 0
#: and 1 are +0.0 and -0.0 everywhere, which only a bitwise comparison tells apart.
SEEDS = 6

ids_strategy = st.lists(st.integers(0, ID_POOL - 1), min_size=1, max_size=8, unique=True)


def vector(seed: int, id_: int) -> np.ndarray:
    if seed == 0:
        return np.zeros(D, np.float32)
    if seed == 1:
        return np.full(D, -0.0, np.float32)
    return np.random.default_rng([seed, id_]).standard_normal(D).astype(np.float32)


Model = dict[int, np.ndarray]


def as_rows(model: Model) -> tuple[np.ndarray, np.ndarray]:
    ids = np.array(sorted(model), dtype=np.int64)
    vectors = np.stack([model[i] for i in ids]) if len(ids) else np.empty((0, D), np.float32)
    return ids, vectors


def changes(old: Model, new: Model) -> dict[str, int]:
    same = lambda a, b: a.tobytes() == b.tobytes()  # noqa: E731 — bitwise, as vecdr hashes
    return {
        "added": sum(1 for i in new if i not in old),
        "changed": sum(1 for i in new if i in old and not same(new[i], old[i])),
        "deleted": sum(1 for i in old if i not in new),
    }


class SnapshotMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="vecdr-sm-"))
        self.memory_root = f"vecdr-sm-{uuid.uuid4().hex}"
        # Diff mode on a memory store, tracked mode on local disk.
        self.diff_repo = vecdr.init(f"memory://{self.memory_root}")
        self.tracked_repo = vecdr.init(self.tmp / "repo")
        self.model: Model = {}
        self.tracked = vecdr.faiss.TrackedIndex(faiss.IndexIDMap2(faiss.IndexFlatL2(D)), self.tmp / "journal")
        self.diff_taken: list[tuple[str, Model]] = []
        self.tracked_taken: list[tuple[str, Model]] = []

    def teardown(self) -> None:
        try:
            self.check_every_snapshot()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
            fs = fsspec.filesystem("memory")
            if fs.exists(f"/{self.memory_root}"):
                fs.rm(f"/{self.memory_root}", recursive=True)

    # -- changes ------------------------------------------------------------------

    @rule(ids=ids_strategy, seed=st.integers(0, SEEDS - 1))
    def upsert(self, ids: list[int], seed: int) -> None:
        vectors = np.stack([vector(seed, i) for i in ids])
        self.tracked.upsert(vectors, np.array(ids, np.int64))
        for i, v in zip(ids, vectors, strict=True):
            self.model[i] = v.copy()

    @rule(ids=ids_strategy)
    def delete(self, ids: list[int]) -> None:
        self.tracked.remove_ids(np.array(ids, np.int64))
        for i in ids:
            self.model.pop(i, None)

    # -- snapshots ----------------------------------------------------------------

    def _expect(self, result: vecdr.SnapshotResult, taken: list[tuple[str, Model]]) -> None:
        previous = taken[-1][1] if taken else {}
        assert result.rows == len(self.model)
        assert {"added": result.added, "changed": result.changed, "deleted": result.deleted} == (
            changes(previous, self.model)
        )
        assert result.parent == (taken[-1][0] if taken else None)
        taken.append((result.snapshot, {k: v.copy() for k, v in self.model.items()}))

    @rule()
    def snapshot_diff(self) -> None:
        ids, vectors = as_rows(self.model)
        index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
        if len(ids):
            # Insertion order shuffled: the scan order must not matter.
            order = np.random.default_rng(len(self.diff_taken)).permutation(len(ids))
            index.add_with_ids(vectors[order], ids[order])
        result = vecdr.snapshot(self.diff_repo, index, collection="c")
        assert result.mode == ("diff" if self.diff_taken else "full")
        self._expect(result, self.diff_taken)

    @rule(mode=st.sampled_from(["auto", "auto", "diff", "full"]))
    def snapshot_tracked(self, mode: str) -> None:
        result = vecdr.snapshot(self.tracked_repo, self.tracked, collection="t", mode=mode)
        if mode == "auto" and self.tracked_taken:
            # The journal continues the latest snapshot, whatever mode that one ran.
            assert result.mode == "tracked"
        if mode == "full":
            assert result.mode == "full"
            assert result.rows == len(self.model)
            assert result.added == len(self.model)  # compared with nothing: every row is new
            self.tracked_taken.append((result.snapshot, {k: v.copy() for k, v in self.model.items()}))
            return
        self._expect(result, self.tracked_taken)

    # -- checks ---------------------------------------------------------------------

    @invariant()
    def tracked_index_matches_the_model(self) -> None:
        assert_same_rows(faiss_rows(self.tracked.index), as_rows(self.model))

    @precondition(lambda self: self.diff_taken or self.tracked_taken)
    @rule()
    def check_every_snapshot(self) -> None:
        for repo, taken in ((self.diff_repo, self.diff_taken), (self.tracked_repo, self.tracked_taken)):
            for snapshot_id, model in taken:
                restored = vecdr.restore_index(repo, snapshot_id)
                assert_same_rows(faiss_rows(restored), as_rows(model))

    @precondition(lambda self: self.tracked_taken)
    @rule()
    def export_latest(self) -> None:
        """The tracked repository's latest snapshot, read back through ``export`` (.npy)."""
        snapshot_id, model = self.tracked_taken[-1]
        out = self.tmp / f"export-{uuid.uuid4().hex}.npy"
        vecdr.export(self.tracked_repo, snapshot_id, out)
        ids = np.load(out.with_suffix(".ids.npy"))
        vectors = np.load(out)
        assert_same_rows((ids, vectors), as_rows(model))


SnapshotMachine.TestCase.settings = settings(max_examples=75, stateful_step_count=30, deadline=None)
TestSnapshots = SnapshotMachine.TestCase
