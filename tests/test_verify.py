"""``vecdr.verify`` and restore against damaged repositories: one flipped byte in
each kind of object, a truncated and a missing segment, and a clean repository,
on local disk, in memory and on S3 (every object damaged through the store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

import vecdr
from vecdr.backends.base import Source, SourceInfo
from vecdr.backends.faiss import FaissTarget
from vecdr.engines import open_snapshot
from vecdr.errors import IntegrityError
from vecdr.format.hashing import sha256_hex
from vecdr.format.records import commit_key
from vecdr.format.segment import decode_segment, encode_segment, vectors_from_arrow, vectors_to_arrow
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 16
N = 1000


@dataclass
class Damaged:
    repo: vecdr.Repository
    out: Path  # a folder for restored and exported files
    first: str
    second: str
    first_rows: tuple[np.ndarray, np.ndarray]
    second_rows: tuple[np.ndarray, np.ndarray]
    keys: dict[str, str]  # object kind -> the key of one object of that kind

    def read(self, kind: str) -> bytes:
        return self.repo.store.read(self.keys[kind])

    def write(self, kind: str, data: bytes) -> None:
        """Replace the object's bytes at rest, under its final name."""
        self.repo.store.write(self.keys[kind], data)

    def flip(self, kind: str, at: float = 0.5) -> None:
        data = bytearray(self.read(kind))
        data[int(len(data) * at)] ^= 0xFF
        self.write(kind, bytes(data))

    def remove(self, kind: str) -> None:
        self.repo.store.delete(self.keys[kind])


@pytest.fixture(params=["local", "memory", "s3"])
def damaged(request: pytest.FixtureRequest, tmp_path: Path) -> Damaged:
    """Two snapshots of an IVF-Flat index sharing one trained state. The first keeps a
    native blob; the second overwrites and deletes rows, so it has a deletion vector,
    and keeps no blob, so restoring it reads segments, deletions and trained state."""
    rng = np.random.default_rng(11)
    ids = rng.permutation(10 * N)[:N].astype(np.int64)
    vectors = rng.standard_normal((N, D)).astype(np.float32)
    index = faiss.index_factory(D, "IVF16,Flat")
    index.train(vectors)
    index.add_with_ids(vectors, ids)
    if request.param == "s3":
        repo = vecdr.init(request.getfixturevalue("s3_url"), request.getfixturevalue("s3").storage_options())
    elif request.param == "memory":
        repo = vecdr.init(request.getfixturevalue("memory_url"))
    else:
        repo = vecdr.init(tmp_path / "repo")
    first = vecdr.snapshot(repo, index, with_index=True)

    index.remove_ids(ids[:80])  # 50 deleted, 30 overwritten
    updated = rng.standard_normal((30, D)).astype(np.float32)
    index.add_with_ids(updated, ids[50:80])
    second = vecdr.snapshot(repo, index)
    assert (second.changed, second.deleted) == (30, 50)

    m1 = open_snapshot(repo, first.snapshot)
    m2 = open_snapshot(repo, second.snapshot)
    shared = m2.segments[0]
    assert shared.object == m1.segments[0].object and shared.deletions is not None
    keys = {
        "segment": shared.object.key,
        "deletions": shared.deletions.key,
        "row hashes": m2.segments[-1].hashes.key,
        "trained": m2.artifacts["trained"].key,
        "native index": m1.artifacts["native_index"].key,
        "manifest": f"manifests/{second.snapshot}.json",
        "commit record": commit_key(second.seq),
    }
    assert m1.artifacts["trained"] == m2.artifacts["trained"]  # one trained state, shared
    assert "native_index" not in m2.artifacts
    second_rows = (
        np.concatenate([ids[80:], ids[50:80]]),
        np.concatenate([vectors[80:], updated]),
    )
    out = tmp_path / "out"
    out.mkdir()
    return Damaged(repo, out, first.snapshot, second.snapshot, (ids, vectors), second_rows, keys)


def error_keys(repo: vecdr.Repository, read_data: bool = True) -> list[str]:
    return [p.object for p in vecdr.verify(repo, read_data=read_data).errors]


def test_clean_repository_verifies(damaged: Damaged) -> None:
    for read_data in (False, True):
        report = vecdr.verify(damaged.repo, read_data=read_data)
        assert report.ok, report.errors
        assert report.errors == []
        assert report.unreferenced == []
        assert report.snapshots == 2
    expected = set()
    for snapshot in (damaged.first, damaged.second):
        manifest = open_snapshot(damaged.repo, snapshot)
        expected |= {ref.key for ref in manifest.referenced()} | {f"manifests/{snapshot}.json"}
    assert report.objects == len(expected)
    assert report.bytes_read >= sum(damaged.repo.store.size(k) for k in expected if not k.startswith("manifests/"))


KINDS = ["segment", "deletions", "row hashes", "trained", "native index", "manifest", "commit record"]


@pytest.mark.fault("a flipped byte at rest: {kind}")
@pytest.mark.parametrize("kind", KINDS)
def test_one_flipped_byte_is_reported_against_its_object(kind: str, damaged: Damaged) -> None:
    damaged.flip(kind)
    assert error_keys(damaged.repo) == [damaged.keys[kind]]


@pytest.mark.fault("restore from a flipped byte: {kind}")
@pytest.mark.parametrize("kind", ["segment", "deletions", "manifest", "commit record"])
def test_restoring_from_a_flipped_byte_fails_loudly(kind: str, damaged: Damaged) -> None:
    damaged.flip(kind)
    with pytest.raises(IntegrityError) as caught:
        vecdr.restore(damaged.repo, FaissTarget(None), damaged.second)
    assert caught.value.path == damaged.keys[kind]
    with pytest.raises(IntegrityError):
        vecdr.restore_index(damaged.repo, damaged.second)
    with pytest.raises(IntegrityError):
        vecdr.export(damaged.repo, damaged.second, damaged.out / "out.parquet")
    assert not (damaged.out / "out.parquet").exists()


@pytest.mark.parametrize("kind", ["trained", "native index"])
def test_damaged_index_state_is_never_used(kind: str, damaged: Damaged, tmp_path: Path) -> None:
    """A restore either refuses or rebuilds from the embeddings; it never uses bad bytes."""
    damaged.flip(kind)
    # The trained state is used by the second snapshot, the native blob by the first.
    snapshot, rows = (damaged.second, damaged.second_rows) if kind == "trained" else (damaged.first, damaged.first_rows)
    out = tmp_path / "r.faiss"
    try:
        result = vecdr.restore(damaged.repo, FaissTarget(out), snapshot)
    except IntegrityError as exc:
        assert exc.path == damaged.keys[kind]
        assert not out.exists()
        return
    assert result.native is False
    assert_same_rows(faiss_rows(faiss.read_index(str(out))), rows)


def test_native_blob_restore_is_hash_checked_and_correct(damaged: Damaged, tmp_path: Path) -> None:
    result = vecdr.restore(damaged.repo, FaissTarget(tmp_path / "r.faiss"), damaged.first)
    assert result.native is True
    assert_same_rows(faiss_rows(faiss.read_index(str(tmp_path / "r.faiss"))), damaged.first_rows)


def test_damaged_row_hashes_stop_the_next_snapshot(damaged: Damaged) -> None:
    damaged.flip("row hashes")
    # Restores do not need the row hashes…
    assert_same_rows(faiss_rows(vecdr.restore_index(damaged.repo, damaged.second)), damaged.second_rows)
    # …but the next incremental snapshot does, and must not guess.
    ids, vectors = damaged.second_rows
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(vectors, ids)
    commits = damaged.repo.commits()
    with pytest.raises(IntegrityError):
        vecdr.snapshot(damaged.repo, index, collection=commits[-1].collection)
    assert damaged.repo.commits() == commits


@pytest.mark.fault("a truncated segment under its final name")
@pytest.mark.parametrize("read_data", [False, True])
def test_truncated_segment_is_caught(read_data: bool, damaged: Damaged) -> None:
    data = damaged.read("segment")
    damaged.write("segment", data[: len(data) // 2])
    assert error_keys(damaged.repo, read_data) == [damaged.keys["segment"]]
    with pytest.raises(IntegrityError):
        vecdr.restore_index(damaged.repo, damaged.second)
    for i, snapshot in enumerate((damaged.first, damaged.second)):
        with pytest.raises(IntegrityError):
            vecdr.export(damaged.repo, snapshot, damaged.out / f"out{i}.parquet")


@pytest.mark.fault("a referenced object missing: {kind}")
@pytest.mark.parametrize("read_data", [False, True])
@pytest.mark.parametrize("kind", ["segment", "deletions", "row hashes", "native index"])
def test_missing_object_is_caught(kind: str, read_data: bool, damaged: Damaged) -> None:
    damaged.remove(kind)
    assert error_keys(damaged.repo, read_data) == [damaged.keys[kind]]


def test_missing_segment_fails_the_restore(damaged: Damaged) -> None:
    damaged.remove("segment")
    with pytest.raises(IntegrityError) as caught:
        vecdr.restore(damaged.repo, FaissTarget(damaged.out / "r.faiss"), damaged.second)
    assert caught.value.path == damaged.keys["segment"]
    assert not (damaged.out / "r.faiss").exists()


def test_missing_manifest_is_caught(damaged: Damaged) -> None:
    damaged.remove("manifest")
    assert error_keys(damaged.repo) == [damaged.keys["manifest"]]
    with pytest.raises(IntegrityError):
        vecdr.restore_index(damaged.repo, damaged.second)
    # The other snapshot is untouched.
    assert_same_rows(faiss_rows(vecdr.restore_index(damaged.repo, damaged.first)), damaged.first_rows)


def test_damage_to_one_snapshot_spares_the_other(damaged: Damaged, tmp_path: Path) -> None:
    damaged.flip("deletions")  # only the second snapshot has it
    assert error_keys(damaged.repo) == [damaged.keys["deletions"]]
    assert_same_rows(faiss_rows(vecdr.restore_index(damaged.repo, damaged.first)), damaged.first_rows)
    vecdr.export(damaged.repo, damaged.first, tmp_path / "first.npy")
    assert_same_rows((np.load(tmp_path / "first.ids.npy"), np.load(tmp_path / "first.npy")), damaged.first_rows)


def test_a_corrupt_commit_record_does_not_block_other_snapshots(damaged: Damaged) -> None:
    damaged.flip("commit record")
    with pytest.warns(UserWarning, match="skipping unreadable commit record"):
        restored = vecdr.restore_index(damaged.repo, damaged.first)
    assert_same_rows(faiss_rows(restored), damaged.first_rows)


def test_a_corrupt_commit_record_does_not_stop_new_backups(damaged: Damaged) -> None:
    """Backups of another collection must go on while the damage is looked into."""
    damaged.flip("commit record")
    ids, vectors = damaged.first_rows
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(vectors, ids)
    with pytest.warns(UserWarning, match="skipping unreadable commit record"):
        result = vecdr.snapshot(damaged.repo, index, collection="other")
    assert result.seq == 3
    with pytest.warns(UserWarning, match="skipping unreadable commit record"):
        restored = vecdr.restore_index(damaged.repo, result.snapshot)
    assert_same_rows(faiss_rows(restored), damaged.first_rows)


def test_commit_record_fields_are_checked_against_the_manifest(damaged: Damaged) -> None:
    """A bit flip that keeps the record valid JSON must still be found: the record
    repeats what its (hash-checked) manifest says, and resolving by collection, tag
    or time reads the record, not the manifest."""
    original = damaged.read("commit record")
    undetected = []
    for field, value in [
        ("collection", "faisr"),
        ("tags", ["nightlx"]),
        ("rows", 1051),
        ("created_at", "2001-01-01T00:00:00.000000Z"),
        ("parent", "0" * 32),
    ]:
        doc = json.loads(original)
        doc[field] = value
        damaged.write("commit record", json.dumps(doc, sort_keys=True, indent=1).encode() + b"\n")
        if error_keys(damaged.repo) != [damaged.keys["commit record"]]:
            undetected.append(field)
    damaged.write("commit record", original)
    assert undetected == [], f"a commit record with a changed {undetected} verifies clean"


# -- row hashes recomputed from the segment data ----------------------------------------------


def _rows_snapshot(tmp_path: Path) -> tuple[vecdr.Repository, str]:
    rng = np.random.default_rng(4)
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(rng.standard_normal((200, D)).astype(np.float32), np.arange(200))
    repo = vecdr.init(tmp_path / "repo")
    return repo, vecdr.snapshot(repo, index).snapshot


@pytest.mark.fault("segment whose vectors do not match its stored row hashes")
def test_verify_recomputes_every_row_hash(tmp_path: Path) -> None:
    """A segment re-encoded with one vector changed, stored under its own hash, with the
    manifest and commit record rewritten to match: every sha256 agrees, only the row
    hashes computed from the data do not."""
    repo, snapshot = _rows_snapshot(tmp_path)
    entry = open_snapshot(repo, snapshot).segments[0]
    table = decode_segment(repo.get(entry.object))
    vectors = vectors_from_arrow(table.column("vector"), D).copy()
    vectors[7] += 1
    altered = table.set_column(1, "vector", vectors_to_arrow(vectors)).cast(table.schema)
    ref, _ = repo.put("segments", bytes(encode_segment(altered)), "parquet")
    root = Path(repo.store.local_path(""))
    record = json.loads((root / commit_key(1)).read_bytes())
    doc = json.loads((root / record["manifest"]["key"]).read_bytes())
    doc["segments"][0]["object"] = ref.to_dict()
    data = json.dumps(doc).encode()
    (root / record["manifest"]["key"]).write_bytes(data)
    record["manifest"].update(sha256=sha256_hex(data), size=len(data))
    (root / commit_key(1)).write_bytes(json.dumps(record).encode())

    assert vecdr.verify(repo).ok  # presence and sizes are right
    errors = vecdr.verify(repo, read_data=True).errors
    assert [p.object for p in errors] == [ref.key]
    assert "1 of 200 rows do not match their row hashes" in errors[0].problem and "id 7" in errors[0].problem


class ReusedBuffer(Source):
    """A source that hands out views of one buffer and refills it for the next batch, as a
    source reading a live index through zero-copy views sees it change under it."""

    backend = "test"

    def __init__(self, ids: np.ndarray, vectors: np.ndarray, batch: int) -> None:
        super().__init__("test:reused")
        self.all_ids, self.all_vectors, self.batch = ids, vectors, batch

    def info(self) -> SourceInfo:
        return SourceInfo(name="reused", dimension=D, id_type="int64", rows=len(self.all_ids), unique_ids=True)

    def ids(self) -> pa.Array:
        return pa.array(self.all_ids)

    def scan(self, batch_rows: int) -> Iterator[pa.Table]:
        ids, vectors = np.empty(self.batch, np.int64), np.empty((self.batch, D), np.float32)
        for start in range(0, len(self.all_ids), self.batch):
            n = min(self.batch, len(self.all_ids) - start)
            ids[:n], vectors[:n] = self.all_ids[start : start + n], self.all_vectors[start : start + n]
            yield pa.table({"id": pa.array(ids[:n]), "vector": vectors_to_arrow(vectors[:n])})


@pytest.mark.fault("source batches that are views of memory the source reuses")
@pytest.mark.parametrize("mode", ["full", "diff"])
def test_snapshots_hash_and_store_the_same_bytes(mode: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    ids = np.arange(3000, dtype=np.int64)
    vectors = rng.standard_normal((3000, D)).astype(np.float32)
    repo = vecdr.init(tmp_path / "repo")
    vecdr.snapshot(repo, ReusedBuffer(ids, vectors, 100))
    if mode == "diff":
        vectors[::3] += 1  # rows hashed against the previous snapshot, in the engine
        vecdr.snapshot(repo, ReusedBuffer(ids, vectors, 100), mode="diff")
    assert vecdr.verify(repo, read_data=True).ok
    assert_same_rows(faiss_rows(vecdr.restore_index(repo)), (ids, vectors))
