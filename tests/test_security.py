"""Security: documents cannot name objects outside the repository, stores refuse keys
that leave their root, and a native index blob is deserialized only after its hash
matches the manifest."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.backends import faiss as faiss_backend
from vecdr.backends.faiss import FaissTarget
from vecdr.engines import open_snapshot
from vecdr.errors import IntegrityError, UnsafeKeyError
from vecdr.format.hashing import sha256_hex
from vecdr.format.layout import LayoutError, check_ref
from vecdr.format.records import commit_key
from vecdr.repository import Repository
from vecdr.store import open_store
from vecdr.testing.faults import WrappedStore

D = 8
DIGEST = "ab" + "0" * 62

#: Keys that must never reach a store, whatever slot of a document names them.
BAD_KEYS = {
    "parent folder": "../../outside.parquet",
    "parent inside": f"segments/ab/../../../{DIGEST}.parquet",
    "absolute": f"/etc/{DIGEST}.parquet",
    "backslash": f"segments\\ab\\{DIGEST}.parquet",
    "url": f"s3://other-bucket/segments/ab/{DIGEST}.parquet",
    "file url": f"file:///segments/ab/{DIGEST}.parquet",
    "double slash": f"segments//ab/{DIGEST}.parquet",
    "dot folder": f"segments/./ab/{DIGEST}.parquet",
    "trailing newline": f"segments/ab/{DIGEST}.parquet\n",
    "nul": f"segments/ab/{DIGEST}.parquet\x00.txt",
    "upper-case digest": f"segments/AB/{DIGEST.upper()}.parquet",
    "wrong shard": f"segments/cd/{DIGEST}.parquet",
    "another digest": f"segments/ab/ab{'1' * 62}.parquet",
    "short digest": "segments/ab/ab12.parquet",
    "unicode digits": f"segments/ab/{DIGEST[:-1]}\u0661.parquet",
    "another kind": f"artifacts/ab/{DIGEST}.parquet",
    "config": "config.json",
    "commit": "commits/00000000000000000001.json",
    "lock": "locks/exclusive.json",
    "empty": "",
    "not a string": 7,
}


@pytest.mark.parametrize("key", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_a_key_outside_the_layout_is_refused(key: Any) -> None:
    with pytest.raises(LayoutError):
        check_ref("segments", key, DIGEST, 10)


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("segments", f"segments/ab/{DIGEST}.parquet"),
        ("artifacts", f"artifacts/ab/{DIGEST}.hashes.parquet"),
        ("artifacts", f"artifacts/ab/{DIGEST}.faiss"),
        ("manifests", "manifests/0123456789abcdef0123456789abcdef.json"),
    ],
)
def test_keys_of_the_layout_are_accepted(kind: str, key: str) -> None:
    check_ref(kind, key, DIGEST, 0)


@pytest.mark.parametrize(
    ("kind", "key"),
    [
        ("artifacts", f"artifacts/ab/{DIGEST}.FAISS"),
        ("artifacts", f"artifacts/ab/{DIGEST}./faiss"),
        ("artifacts", f"artifacts/ab/{DIGEST}..faiss"),
        ("artifacts", f"artifacts/ab/{DIGEST}.a.b.c.d.e"),
        ("manifests", "manifests/../config.json"),
        ("manifests", "manifests/0123456789ABCDEF0123456789ABCDEF.json"),
        ("manifests", "manifests/ab/0123456789abcdef0123456789abcdef.json"),
    ],
)
def test_other_kinds_keep_to_their_shape(kind: str, key: str) -> None:
    with pytest.raises(LayoutError):
        check_ref(kind, key, DIGEST, 0)


@pytest.mark.parametrize(("sha256", "size"), [("AB" + "0" * 62, 1), (DIGEST[:-1], 1), (DIGEST, -1), (DIGEST, True),
                                              (DIGEST, "1"), (None, 1)])
def test_malformed_hashes_and_sizes_are_refused(sha256: Any, size: Any) -> None:
    with pytest.raises(LayoutError):
        check_ref("segments", f"segments/ab/{DIGEST}.parquet", sha256, size)


# -- crafted documents in a real repository -----------------------------------------


class RecordingStore(WrappedStore):
    """Remembers every key it is asked about."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.keys: list[str] = []

    def read(self, key: str) -> bytes:
        self.keys.append(key)
        return super().read(key)

    def exists(self, key: str) -> bool:
        self.keys.append(key)
        return super().exists(key)

    def size(self, key: str) -> int:
        self.keys.append(key)
        return super().size(key)


@pytest.fixture
def snapshotted(tmp_path: Path) -> tuple[vecdr.Repository, Any]:
    """A repository with one snapshot that has every slot: segments, row hashes, a
    deletion vector, trained state and a native blob."""
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((600, D)).astype(np.float32)
    index = faiss.index_factory(D, "IVF4,Flat")
    index.train(vectors)
    index.add_with_ids(vectors, np.arange(600))
    repo = vecdr.init(tmp_path / "repo")
    vecdr.snapshot(repo, index)
    index.remove_ids(np.arange(10))
    result = vecdr.snapshot(repo, index, with_index=True)
    return repo, result


def _rewrite(repo: vecdr.Repository, seq: int, edit: Callable[[dict[str, Any]], None],
             in_commit: bool = False) -> str:
    """Edit a snapshot's manifest (or its commit record) as an attacker with write access
    would: hashes and sizes made consistent again, so only the key check can stop it."""
    root = Path(repo.store.local_path(""))
    record_path = root / commit_key(seq)
    record = json.loads(record_path.read_bytes())
    if in_commit:
        edit(record)
    else:
        manifest_path = root / record["manifest"]["key"]
        doc = json.loads(manifest_path.read_bytes())
        edit(doc)
        data = json.dumps(doc).encode()
        manifest_path.write_bytes(data)
        record["manifest"].update(sha256=sha256_hex(data), size=len(data))
    record_path.write_bytes(json.dumps(record).encode())
    return str(record["manifest"]["key"])


SLOTS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "segment": lambda doc, key: doc["segments"][0]["object"].update(key=key),
    "row hashes": lambda doc, key: doc["segments"][0]["hashes"].update(key=key),
    "deletions": lambda doc, key: next(s for s in doc["segments"] if s["deletions"])["deletions"].update(key=key),
    "native index": lambda doc, key: doc["artifacts"]["native_index"].update(key=key),
    "trained": lambda doc, key: doc["artifacts"]["trained"].update(key=key),
}


@pytest.mark.parametrize("key", ["../../outside.parquet", "/etc/passwd", "s3://elsewhere/x", "segments\\..\\..\\x"])
@pytest.mark.parametrize("slot", SLOTS)
def test_a_manifest_naming_a_path_outside_the_repository_is_refused(
    slot: str, key: str, snapshotted: tuple[vecdr.Repository, Any]
) -> None:
    repo, result = snapshotted
    manifest_key = _rewrite(repo, result.seq, lambda doc: SLOTS[slot](doc, key))
    spy = RecordingStore(repo.store)
    with pytest.raises(IntegrityError) as caught:
        vecdr.restore(Repository(spy, repo.config), FaissTarget(None), result.snapshot)
    assert caught.value.path == manifest_key
    assert manifest_key in str(caught.value) and "refusing" in str(caught.value)
    assert key not in spy.keys
    assert all(k.startswith(("commits/", "manifests/")) for k in spy.keys)  # nothing else was touched

    report = vecdr.verify(repo, read_data=True)
    assert [p.object for p in report.errors] == [manifest_key]


@pytest.mark.parametrize("key", ["../config.json", "/tmp/manifest.json", "manifests/../../m.json"])
def test_a_commit_record_naming_a_path_outside_the_repository_is_refused(
    key: str, snapshotted: tuple[vecdr.Repository, Any]
) -> None:
    repo, result = snapshotted
    _rewrite(repo, result.seq, lambda record: record["manifest"].update(key=key), in_commit=True)
    spy = RecordingStore(repo.store)
    with pytest.raises(IntegrityError) as caught:
        vecdr.restore(Repository(spy, repo.config), FaissTarget(None), result.snapshot)
    assert caught.value.path == commit_key(result.seq)
    assert key not in spy.keys
    assert [p.object for p in vecdr.verify(repo).errors] == [commit_key(result.seq)]


# -- stores never leave their root -----------------------------------------------------

UNSAFE = ["../outside", "a/../../outside", "/etc/passwd", "a\\..\\b", "a//b", "./a", "a/./b", "a/\x00b", "c:/x"]


@pytest.mark.parametrize("key", UNSAFE)
@pytest.mark.parametrize("kind", ["local", "memory"])
def test_stores_refuse_keys_that_leave_their_root(kind: str, key: str, tmp_path: Path, memory_url: str) -> None:
    store = open_store(tmp_path / "root" if kind == "local" else memory_url)
    store.write("inside/a", b"x")
    for call in (
        lambda: store.read(key),
        lambda: store.write(key, b"y"),
        lambda: store.create(key, b"y"),
        lambda: store.exists(key),
        lambda: store.size(key),
        lambda: store.delete(key),
        lambda: list(store.list(key)),
    ):
        with pytest.raises(UnsafeKeyError):
            call()
    assert list(store.list()) == ["inside/a"]
    if kind == "local":
        assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


# -- native index blobs: hash first, deserialize after -------------------------------


def _other_index(n: int) -> bytes:
    """A valid FAISS index of the snapshot's shape but other vectors."""
    vectors = np.random.default_rng(99).standard_normal((n, D)).astype(np.float32)
    index = faiss.index_factory(D, "IVF4,Flat")
    index.train(vectors)
    index.add_with_ids(vectors, np.arange(n))
    return bytes(faiss.serialize_index(index))


@pytest.fixture
def deserialized(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every FAISS deserialization the FAISS target does, in order, beside the hash checks."""
    events: list[str] = []
    real_deserialize, real_read_index, real_get = faiss_backend.fi.deserialize, faiss.read_index, Repository.get

    def deserialize(data: Any) -> Any:
        events.append("deserialize")
        return real_deserialize(data)

    def read_index(*args: Any) -> Any:
        if isinstance(args[0], str | Path):  # a file, loaded in place (deserialize reads from memory)
            events.append("read_index")
        return real_read_index(*args)

    def get(self: Repository, ref: Any) -> bytes:
        data = real_get(self, ref)
        events.append(f"checked {ref.key}")
        return data

    monkeypatch.setattr(faiss_backend.fi, "deserialize", deserialize)
    monkeypatch.setattr(faiss, "read_index", read_index)
    monkeypatch.setattr(Repository, "get", get)
    return events


def test_a_native_blob_is_deserialized_only_after_its_hash_matches(
    snapshotted: tuple[vecdr.Repository, Any], deserialized: list[str]
) -> None:
    repo, result = snapshotted
    blob = open_snapshot(repo, result.snapshot).artifacts["native_index"]
    deserialized.clear()
    index = vecdr.restore_index(repo, result.snapshot)
    assert index.ntotal == 590
    assert deserialized.index(f"checked {blob.key}") < deserialized.index("deserialize")
    assert "read_index" not in deserialized


@pytest.mark.parametrize("into_file", [False, True], ids=["in-memory", "file"])
def test_a_swapped_native_blob_is_never_deserialized_or_used(
    into_file: bool, snapshotted: tuple[vecdr.Repository, Any], deserialized: list[str], tmp_path: Path
) -> None:
    repo, result = snapshotted
    blob = open_snapshot(repo, result.snapshot).artifacts["native_index"]
    # A valid index of the same shape: were it loaded, it would pass every check but the hash.
    Path(repo.store.local_path(blob.key)).write_bytes(_other_index(590))
    deserialized.clear()
    target = FaissTarget(tmp_path / "restored.faiss" if into_file else None)
    with pytest.raises(IntegrityError) as caught:
        vecdr.restore(repo, target, result.snapshot)
    assert caught.value.path == blob.key
    assert "deserialize" not in deserialized and "read_index" not in deserialized
    assert target.index is None and not (tmp_path / "restored.faiss").exists()
