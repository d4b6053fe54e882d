"""Damaged or missing objects: a snapshot never reuses one it has reason to doubt, and
``vecdr repair`` mends what live snapshots reference (row-hash sidecars from their
segments, segments from a source), on local disk, in memory and on S3."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.cli.main import main
from vecdr.engines import open_snapshot
from vecdr.errors import IntegrityError, StoreUnreachableError
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.faults import WrappedStore

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


# -- vecdr repair ------------------------------------------------------------------------------


def cli(*args: str) -> tuple[int, str, str]:
    """``vecdr ARGS…`` in this process: (exit status, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def two_snapshots(repo: vecdr.Repository, tmp_path: Path) -> tuple[faiss.Index, faiss.Index, str, str, Path]:
    """A FAISS file snapshotted twice: the second time with 40 rows deleted and 30 added,
    so the second snapshot shares the first one's segment (with a deletion vector)
    and has a segment of its own. Returns both indexes, both snapshot ids and the file."""
    path = tmp_path / "live.faiss"
    old = flat_index(seed=5)
    faiss.write_index(old, str(path))
    first = vecdr.snapshot(repo, f"faiss:{path}", collection="c").snapshot
    new = flat_index(seed=5)
    ids = faiss_rows(new)[0]
    new.remove_ids(ids[:40])
    rng = np.random.default_rng(9)
    new.add_with_ids(rng.standard_normal((30, D)).astype(np.float32), np.arange(10**6, 10**6 + 30, dtype=np.int64))
    faiss.write_index(new, str(path))
    second = vecdr.snapshot(repo, f"faiss:{path}", collection="c").snapshot
    return old, new, first, second, path


def commit_of(repo: vecdr.Repository, snapshot: str) -> str | None:
    return next((c.key for c in repo.commits() if c.snapshot == snapshot), None)


@pytest.mark.fault("repair: a {how} row-hash sidecar")
@pytest.mark.parametrize("how", ["flipped", "truncated", "missing"])
def test_repair_rebuilds_a_damaged_sidecar_from_its_segment(fresh: vecdr.Repository, tmp_path: Path,
                                                            how: str) -> None:
    _, new, first, second, _ = two_snapshots(fresh, tmp_path)
    shared = open_snapshot(fresh, second).segments[0]
    assert shared.object == open_snapshot(fresh, first).segments[0].object
    damage(fresh, shared.hashes.key, how)
    assert [p.object for p in vecdr.verify(fresh, read_data=True).errors] == [shared.hashes.key]

    plan = vecdr.repair(fresh, dry_run=True)
    assert [(d.object, d.repaired) for d in plan.damaged] == [(shared.hashes.key, True)] and plan.ok
    assert not vecdr.verify(fresh, read_data=True).ok  # a dry run writes nothing

    result = vecdr.repair(fresh)
    assert [(d.object, d.kind, d.repaired) for d in result.damaged] == [(shared.hashes.key, "row hashes", True)]
    assert set(result.damaged[0].snapshots) == {first, second}
    assert result.ok and result.unrepairable == [] and result.forgotten == []
    assert vecdr.verify(fresh, read_data=True).ok
    # The next snapshot reads the sidecar to compare rows: it finds nothing changed.
    again = vecdr.snapshot(fresh, new, collection="c", mode="diff")
    assert (again.added, again.changed, again.deleted) == (0, 0, 0)
    assert vecdr.repair(fresh).damaged == []


@pytest.mark.fault("repair --source: a {how} segment", store="local")
@pytest.mark.parametrize("how", ["flipped", "truncated", "missing"])
def test_repair_rebuilds_a_damaged_segment_from_the_source(repo: vecdr.Repository, tmp_path: Path,
                                                           how: str) -> None:
    _, new, first, second, path = two_snapshots(repo, tmp_path)
    own = open_snapshot(repo, second).segments[-1].object.key  # the second snapshot's new rows
    damage(repo, own, how)
    with pytest.raises(IntegrityError):
        vecdr.restore_index(repo, "latest", collection="c")

    code, out, _ = cli("repair", str(repo.url))  # without a source: reported, kept, status 1
    assert code == 1 and "no source" in out and f"damaged snapshot {second}: kept" in out
    code, out, _ = cli("repair", str(repo.url), "--source", f"faiss:{path}", "--dry-run")
    assert code == 0 and "would be repaired" in out
    assert not vecdr.verify(repo).ok or how == "flipped"  # still damaged after the dry run
    code, out, _ = cli("repair", str(repo.url), "--source", f"faiss:{path}")
    assert code == 0, out
    assert f"{own}:" in out and "repaired: rebuilt from faiss:" in out

    assert vecdr.verify(repo, read_data=True).ok
    assert_restores(repo, new, second)  # exactly the source's rows
    assert commit_of(repo, first) and commit_of(repo, second)  # same snapshots, nothing rewritten


@pytest.mark.fault("repair --source: a shared segment and another segment's sidecar at once")
def test_repair_from_a_source_on_every_store(fresh: vecdr.Repository, tmp_path: Path) -> None:
    # The first snapshot's segment (shared, with a deletion vector in the second) and
    # the second's sidecar: one from the source, one from its segment.
    old, new, first, second, path = two_snapshots(fresh, tmp_path)
    faiss.write_index(old, str(path))  # the source as it was: every row of the shared segment
    m = open_snapshot(fresh, second)
    damage(fresh, m.segments[0].object.key, "flipped")
    damage(fresh, m.segments[-1].hashes.key, "missing")
    result = vecdr.repair(fresh, f"faiss:{path}")
    assert sorted((d.kind, d.repaired) for d in result.damaged) == [("row hashes", True), ("segment", True)]
    assert result.ok and vecdr.verify(fresh, read_data=True).ok
    assert_restores(fresh, old, first)
    assert_restores(fresh, new, second)


@pytest.mark.fault("repair --source whose rows have changed since the snapshot", store="local")
def test_repair_refuses_rows_the_source_no_longer_holds_as_they_were(repo: vecdr.Repository,
                                                                     tmp_path: Path) -> None:
    # The shared segment lost 40 rows since: the current source cannot give them back.
    _, _, first, second, path = two_snapshots(repo, tmp_path)
    key = open_snapshot(repo, first).segments[0].object.key
    damage(repo, key, "flipped")
    result = vecdr.repair(repo, f"faiss:{path}", collection="c")
    assert [(d.object, d.repaired) for d in result.damaged] == [(key, False)]
    assert "no longer holds 40 of its" in result.damaged[0].how
    assert sorted(result.unrepairable) == sorted([first, second]) and not result.ok
    assert commit_of(repo, first) and commit_of(repo, second)  # kept
    with pytest.raises(IntegrityError):
        vecdr.restore_index(repo, second)


@pytest.mark.fault("repair: an unrepairable snapshot, with and without --forget-unrepairable", store="local")
def test_unrepairable_snapshots_are_kept_unless_told(repo: vecdr.Repository, tmp_path: Path) -> None:
    old, new, first, second, path = two_snapshots(repo, tmp_path)
    later = flat_index(seed=8)  # rows of their own: its snapshot shares no object with the others
    faiss.write_index(later, str(path))
    third = vecdr.snapshot(repo, f"faiss:{path}", collection="c").snapshot
    manifest = open_snapshot(repo, third)
    assert not {s.object.key for s in manifest.segments} & {s.object.key for s in open_snapshot(repo, second).segments}
    damage(repo, manifest.segments[0].object.key, "truncated")
    damage(repo, f"manifests/{first}.json", "flipped")

    code, out, _ = cli("repair", str(repo.url), "--forget-unrepairable", "--dry-run")
    assert code == 0 and f"damaged snapshot {third}: would be forgotten" in out
    code, out, _ = cli("repair", str(repo.url))
    assert code == 1 and f"damaged snapshot {third}: kept" in out and f"damaged snapshot {first}: kept" in out
    assert commit_of(repo, first) and commit_of(repo, third)

    code, out, _ = cli("repair", str(repo.url), "--forget-unrepairable", "--json")
    assert code == 0
    assert sorted(json.loads(out)["forgotten"]) == sorted([first, third])
    assert commit_of(repo, first) is None and commit_of(repo, third) is None
    assert commit_of(repo, second) is not None
    assert vecdr.verify(repo).ok  # what is left is whole
    assert_restores(repo, new)  # latest is the second snapshot again
    assert repo.store.exists(manifest.segments[0].object.key)  # objects stay until prune


@pytest.mark.fault("repair of an encrypted repository: a damaged segment and sidecar", store="local")
def test_repair_in_an_encrypted_repository(tmp_path: Path) -> None:
    pytest.importorskip("cryptography", reason="the encrypt extra is not installed")
    repo = vecdr.init(tmp_path / "repo", encrypt=True, password="correct horse")
    path = tmp_path / "live.faiss"
    index = flat_index()
    faiss.write_index(index, str(path))
    snap = vecdr.snapshot(repo, f"faiss:{path}").snapshot
    entry = open_snapshot(repo, snap).segments[0]
    sealed = bytearray(repo.store.inner.read(entry.object.key))
    sealed[len(sealed) // 2] ^= 0xFF  # the ciphertext at rest: it no longer decrypts
    repo.store.inner.write(entry.object.key, bytes(sealed))
    result = vecdr.repair(repo, f"faiss:{path}")
    assert [(d.kind, d.repaired) for d in result.damaged] == [("segment", True)]
    repo.store.inner.delete(entry.hashes.key)
    result = vecdr.repair(repo)
    assert [(d.kind, d.repaired) for d in result.damaged] == [("row hashes", True)]
    assert vecdr.verify(repo, read_data=True).ok
    assert_restores(repo, index)


@pytest.mark.fault("repair --source that does not fit the collection", store="local")
def test_repair_refuses_a_source_that_does_not_fit(repo: vecdr.Repository, tmp_path: Path) -> None:
    _, _, _, second, path = two_snapshots(repo, tmp_path)
    damage(repo, open_snapshot(repo, second).segments[-1].object.key, "flipped")
    other = tmp_path / "other.faiss"
    wide = faiss.IndexIDMap2(faiss.IndexFlatL2(D + 1))
    wide.add_with_ids(np.ones((3, D + 1), np.float32), np.arange(3, dtype=np.int64))
    faiss.write_index(wide, str(other))
    before = {key: repo.store.read(key) for key in repo.store.list()}
    for args, status, needle in [
        (("--source", f"faiss:{other}", "-c", "c"), 1, "dimension"),
        (("--source", f"faiss:{path}", "-c", "nope"), 1, "no collection 'nope'"),
        (("--embeddings", str(tmp_path / "x.npy")), 2, "source"),
        (("--source", ""), 2, "source"),
    ]:
        code, _, err = cli("repair", str(repo.url), *args)
        assert code == status and needle in err, (args, err)
        assert "unexpected" not in err
    assert {key: repo.store.read(key) for key in repo.store.list()} == before  # nothing written, nothing forgotten


class _Unreachable(WrappedStore):
    """Every read of a segment fails as a network that is down does."""

    def read(self, key: str) -> bytes:
        if key.startswith("segments/"):
            raise StoreUnreachableError(f"cannot read {key}: endpoint unreachable")
        return self.inner.read(key)


@pytest.mark.fault("repair --forget-unrepairable while the store cannot be reached", store="local")
def test_an_unreachable_store_is_not_damage(repo: vecdr.Repository, tmp_path: Path) -> None:
    _, _, first, second, _ = two_snapshots(repo, tmp_path)
    flaky = vecdr.Repository(_Unreachable(repo.store), repo.config)
    with pytest.raises(StoreUnreachableError):
        vecdr.repair(flaky, forget_unrepairable=True)
    assert commit_of(repo, first) and commit_of(repo, second)  # nothing forgotten
    assert vecdr.repair(repo, forget_unrepairable=True).damaged == []
