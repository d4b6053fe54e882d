"""Temporaries: a write that fails removes its own; `prune` removes stale ones; `verify` reports them.

A local write goes to ``.tmp-<random>`` beside its final name; an S3 object larger
than a single PUT goes up as a multipart upload. A full disk, a file-size limit or a
killed process leaves them behind, and nothing lists them as objects.
"""

from __future__ import annotations

import os
import resource
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.errors import StoreFullError
from vecdr.store import LocalStore
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.mounts import tmpfs

D = 32


def index_of(n: int, seed: int = 0) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32), np.arange(n))
    return index


def temporaries_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".tmp-*"))


@pytest.mark.fault("a snapshot that fills the disk leaves no temporary files", store="local")
def test_a_snapshot_that_fills_the_disk_leaves_no_temporaries_and_the_next_one_succeeds(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="3m") as disk:
        repo = vecdr.init(disk / "repo")
        with pytest.raises(StoreFullError, match="no space left on the device"):
            vecdr.snapshot(repo, index_of(40_000), collection="big")  # about 5 MB of vectors
        assert temporaries_under(disk) == []
        assert vecdr.verify(repo).temporaries == []
        vecdr.prune(repo, grace=timedelta(0))  # the finished segments of the failed snapshot
        small = index_of(2_000, seed=1)
        done = vecdr.snapshot(repo, small, collection="small")
        assert_same_rows(faiss_rows(vecdr.restore_index(repo, done.snapshot)), faiss_rows(small))


@pytest.mark.fault("a write cut off midway (file size limit) removes its temporary file", store="local")
def test_a_write_cut_off_midway_removes_its_temporary(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    store.write("segments/ab/small", b"x" * 1000)
    # RLIMIT_FSIZE: the kernel stops every write past 64 KiB with EFBIG, as a full disk stops it.
    old_signal = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 16, old_limit[1]))
    try:
        with pytest.raises(OSError):
            store.write("segments/ab/big", b"y" * (1 << 20))
        with pytest.raises(OSError):
            store.create("commits/00000000000000000001.json", b"z" * (1 << 20))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_signal)
    assert temporaries_under(tmp_path / "store") == []
    assert list(store.temporaries()) == []
    assert sorted(store.list()) == ["segments/ab/small"]


@pytest.mark.fault("stale temporary files of a killed write: verify reports, prune removes", store="local")
def test_prune_removes_stale_temporary_files_and_verify_reports_them(repo: vecdr.Repository, tmp_path: Path) -> None:
    done = vecdr.snapshot(repo, index_of(500), collection="c")
    root = tmp_path / "repo"
    stale = root / "segments" / "ab" / ".tmp-0123456789abcdef"
    young = root / "manifests" / ".tmp-fedcba9876543210"
    for path in (stale, young):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial" * 100)
    two_days_ago = time.time() - 2 * 86400
    os.utime(stale, (two_days_ago, two_days_ago))
    report = vecdr.verify(repo)
    assert report.ok
    assert sorted(report.temporaries) == ["manifests/.tmp-fedcba9876543210", "segments/ab/.tmp-0123456789abcdef"]
    dry = vecdr.prune(repo, dry_run=True)
    assert dry.temporaries == ["segments/ab/.tmp-0123456789abcdef"] and stale.exists()
    result = vecdr.prune(repo)
    assert result.temporaries == ["segments/ab/.tmp-0123456789abcdef"]
    assert "segments/ab/.tmp-0123456789abcdef" in result.deleted
    assert not stale.exists() and young.exists()  # within the grace period: maybe a write still running
    assert vecdr.verify(repo).temporaries == ["manifests/.tmp-fedcba9876543210"]
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, done.snapshot)), faiss_rows(index_of(500)))


@pytest.mark.fault("unfinished multipart uploads of a killed write: verify reports, prune removes", store="s3")
def test_prune_aborts_stale_unfinished_uploads_on_s3(s3: Any, s3_url: str) -> None:
    repo = vecdr.init(s3_url, s3.storage_options())
    done = vecdr.snapshot(repo, index_of(500), collection="c")
    bucket, _, prefix = s3_url.removeprefix("s3://").partition("/")
    client = s3.client()
    mine = client.create_multipart_upload(Bucket=bucket, Key=f"{prefix}/segments/cd/{'c' * 64}.parquet")
    client.upload_part(Bucket=bucket, Key=f"{prefix}/segments/cd/{'c' * 64}.parquet", PartNumber=1,
                       UploadId=mine["UploadId"], Body=b"partial" * 1000)
    foreign = client.create_multipart_upload(Bucket=bucket, Key="elsewhere/not-ours.bin")
    report = vecdr.verify(repo)
    assert report.temporaries == [f"segments/cd/{'c' * 64}.parquet?upload={mine['UploadId']}"]
    # moto dates every upload in 2010, so the default grace period applies as to a stale one
    # (local disk tests the young case).
    assert vecdr.prune(repo, dry_run=True).temporaries == report.temporaries
    result = vecdr.prune(repo)
    assert result.temporaries == report.temporaries
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [foreign["UploadId"]]  # another prefix's upload is not ours
    assert vecdr.verify(repo).temporaries == []
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, done.snapshot)), faiss_rows(index_of(500)))
