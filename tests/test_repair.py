"""Damaged or missing objects: a snapshot never reuses one it has reason to doubt, and
``vecdr repair`` mends what live snapshots reference (row-hash sidecars from their
segments, segments from a source), on local disk, in memory and on S3."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.engines import open_snapshot
from vecdr.errors import IntegrityError
from vecdr.testing.backends import assert_same_rows, faiss_rows

D = 8
N = 600


@pytest.fixture(params=["local", "memory", "s3"])
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> vecdr.Repository:
    """An empty repository on each store."""
    if request.param == "s3":
        return vecdr.init(request.getfixturevalue("s3_url"), request.getfixturevalue("s3").storage_options())
    if request.param == "memory":
        return vecdr.init(request.getfixturevalue("memory_url"))
    return vecdr.init(tmp_path / "repo")


def flat_index(seed: int = 3, n: int = N) -> faiss.Index:
    rng = np.random.default_rng(seed)
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(rng.standard_normal((n, D)).astype(np.float32), rng.permutation(10 * n)[:n].astype(np.int64))
    return index


def damage(repo: vecdr.Repository, key: str, how: str) -> None:
    """Damage the object at rest, under its final name."""
    if how == "missing":
        repo.store.delete(key)
        return
    data = bytearray(repo.store.read(key))
    if how == "truncated":
        del data[len(data) // 2 :]
    else:  # flipped: same size, so only its bytes tell
        data[len(data) // 2] ^= 0xFF
    repo.store.write(key, bytes(data))


def assert_restores(repo: vecdr.Repository, index: faiss.Index, snapshot: str = "latest") -> None:
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, snapshot)), faiss_rows(index))


@pytest.mark.fault("a full snapshot reuses a {how} segment of an earlier snapshot")
@pytest.mark.parametrize("how", ["flipped", "truncated", "missing"])
def test_full_snapshot_rewrites_a_damaged_segment_it_reuses(fresh: vecdr.Repository, how: str) -> None:
    index = flat_index()
    first = vecdr.snapshot(fresh, index)
    key = open_snapshot(fresh, first.snapshot).segments[0].object.key
    damage(fresh, key, how)
    with pytest.raises(IntegrityError):
        vecdr.restore_index(fresh, first.snapshot)

    again = vecdr.snapshot(fresh, index, mode="full")
    assert open_snapshot(fresh, again.snapshot).segments[0].object.key == key  # same content, same object
    assert again.bytes_written > fresh.store.size(key)  # it was written again
    assert_restores(fresh, index)
    assert_restores(fresh, index, first.snapshot)  # mended for the earlier snapshot too
    assert vecdr.verify(fresh, read_data=True).ok


@pytest.mark.fault("a full snapshot reuses a damaged row-hash sidecar and artifact", store="local")
def test_full_snapshot_rewrites_every_damaged_object_it_reuses(repo: vecdr.Repository) -> None:
    index = flat_index()
    first = open_snapshot(repo, vecdr.snapshot(repo, index, with_index=True).snapshot)
    keys = [first.segments[0].hashes.key, first.artifacts["native_index"].key]
    for key in keys:
        damage(repo, key, "flipped")
    assert sorted(p.object for p in vecdr.verify(repo, read_data=True).errors) == sorted(keys)
    vecdr.snapshot(repo, index, with_index=True, mode="full")
    assert vecdr.verify(repo, read_data=True).ok
    assert_restores(repo, index)


@pytest.mark.fault("an incremental snapshot reuses a {how} artifact")
@pytest.mark.parametrize("how", ["truncated", "missing"])
def test_incremental_snapshot_size_checks_what_it_reuses(fresh: vecdr.Repository, how: str) -> None:
    # An unchanged index gives the same native blob: the next snapshot's new artifact
    # is an object already stored. A wrong size is seen without reading it.
    index = flat_index()
    first = open_snapshot(fresh, vecdr.snapshot(fresh, index, with_index=True).snapshot)
    key = first.artifacts["native_index"].key
    damage(fresh, key, how)
    second = vecdr.snapshot(fresh, index, with_index=True)
    assert second.mode != "full"
    assert open_snapshot(fresh, second.snapshot).artifacts["native_index"].key == key
    assert_restores(fresh, index)
    assert vecdr.verify(fresh, read_data=True).ok
