"""Large native index blobs: part hashes, parsed as a stream of checked parts.

An object over 32 MiB records the sha256 of each 32 MiB part. A restore from a
large native blob hands FAISS's reader no byte of a part before that part's hash
matched, while the next parts are read and checked; damage anywhere is an
IntegrityError naming the blob, damage on the way is read again and logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.errors import IntegrityError
from vecdr.format.hashing import PART_BYTES, part_hashes, sha256_hex
from vecdr.repository import Repository
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.faults import CorruptOnceStore

D = 96
N = 110_000  # 42 MB of vectors: a blob of two parts


@pytest.fixture(scope="module")
def blob_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Repository, faiss.Index, str]:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(4).standard_normal((N, D)).astype(np.float32), np.arange(N) * 2)
    repo = vecdr.init(tmp_path_factory.mktemp("native") / "repo")
    snap = vecdr.snapshot(repo, index, with_index=True, quality_sample=0)
    return repo, index, snap.snapshot


def blob_ref(repo: Repository, snapshot: str) -> object:
    return repo.load_manifest(next(c for c in repo.commits() if c.snapshot == snapshot)).artifacts["native_index"]


def test_a_large_object_records_a_hash_per_part(blob_repo: tuple[Repository, faiss.Index, str]) -> None:
    repo, _, snapshot = blob_repo
    ref = blob_ref(repo, snapshot)
    data = repo.store.read(ref.key)
    assert ref.size == len(data) > PART_BYTES and len(ref.parts) == -(-ref.size // PART_BYTES) == 2
    assert list(ref.parts) == [sha256_hex(data[i : i + PART_BYTES]) for i in range(0, len(data), PART_BYTES)]
    assert ref.parts == part_hashes(data, threads=1) and ref.sha256 == sha256_hex(data)
    assert part_hashes(b"x" * 100) == ()  # small objects: the whole sha256 only
    manifest = json.loads(repo.store.read(f"manifests/{snapshot}.json"))
    assert manifest["artifacts"]["native_index"]["parts"] == list(ref.parts)


def test_a_restore_parses_the_checked_stream(blob_repo: tuple[Repository, faiss.Index, str]) -> None:
    from vecdr.backends.faiss import FaissTarget

    repo, index, snapshot = blob_repo
    target = FaissTarget(None)
    outcome = vecdr.restore(repo, target, snapshot)
    assert outcome.native and "load_native" in outcome.phases
    assert_same_rows(faiss_rows(target.index), faiss_rows(index))
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, snapshot)), faiss_rows(index))


@pytest.mark.parametrize("part", [0, 1])
def test_damage_in_any_part_is_named_and_nothing_is_restored(
    part: int, blob_repo: tuple[Repository, faiss.Index, str], tmp_path: Path
) -> None:
    repo, _, snapshot = blob_repo
    ref = blob_ref(repo, snapshot)
    path = Path(repo.store.local_path(ref.key))
    original = path.read_bytes()
    damaged = bytearray(original)
    damaged[part * PART_BYTES + 1000] ^= 0x01
    path.write_bytes(bytes(damaged))
    try:
        with pytest.raises(IntegrityError, match=f"part {part}") as caught:
            vecdr.restore_index(repo, snapshot)
        assert caught.value.path == ref.key
        assert [p.object for p in vecdr.verify(repo, read_data=True).errors] == [ref.key]
    finally:
        path.write_bytes(original)
    assert vecdr.verify(repo, read_data=True).ok


def test_a_part_damaged_on_the_way_is_read_again(
    blob_repo: tuple[Repository, faiss.Index, str], caplog: pytest.LogCaptureFixture
) -> None:
    repo, index, snapshot = blob_repo
    ref = blob_ref(repo, snapshot)
    flaky = CorruptOnceStore(repo.store, lambda key: key == ref.key)
    with caplog.at_level(logging.WARNING, logger="vecdr"):
        restored = vecdr.restore_index(Repository(flaky, repo.config), snapshot)
    assert_same_rows(faiss_rows(restored), faiss_rows(index))
    assert flaky.corrupted == [ref.key]
    assert "a second read was intact" in " ".join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("piece", [PART_BYTES, 3 << 20])
@pytest.mark.parametrize("ask", [1 << 20, 5 << 20, PART_BYTES])
def test_the_checked_stream_hands_out_every_byte_in_order_and_a_piece_damaged_on_the_way_is_read_again(
    piece: int, ask: int, blob_repo: tuple[Repository, faiss.Index, str], caplog: pytest.LogCaptureFixture
) -> None:
    from vecdr.repository.verified import VerifiedReader

    repo, _, snapshot = blob_repo
    ref = blob_ref(repo, snapshot)
    flaky = CorruptOnceStore(repo.store, lambda key: key == ref.key)
    reader = VerifiedReader(flaky, ref, piece=piece)
    with caplog.at_level(logging.WARNING, logger="vecdr"):
        chunks = list(iter(lambda: reader.read(ask), b""))
    reader.close()
    assert b"".join(chunks) == repo.store.read(ref.key)
    assert max(map(len, chunks)) <= min(ask, piece)  # short reads, never past a piece
    assert flaky.corrupted == [ref.key]
    assert "a second read was intact" in " ".join(r.getMessage() for r in caplog.records)


def test_malformed_part_hashes_in_a_manifest_are_refused(blob_repo: tuple[Repository, faiss.Index, str]) -> None:
    from vecdr.format.objects import ObjectRef

    repo, _, snapshot = blob_repo
    ref = blob_ref(repo, snapshot).to_dict()
    for parts in (ref["parts"][:1], ref["parts"] + ["0" * 64], ["zz" * 32, ref["parts"][1]], "abc"):
        with pytest.raises(ValueError, match="part hashes"):
            ObjectRef.from_dict({**ref, "parts": parts}, "artifacts")
