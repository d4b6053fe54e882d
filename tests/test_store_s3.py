"""S3 as a repository, against a real S3 endpoint (moto's server) reached only through s3fs.

The store conformance suite, snapshots and restores on S3, configuration the way
AWS users give it (environment, endpoint, profile, server-side encryption),
secrets kept out of everything vecdr writes or prints, racing writers, faults
injected between vecdr and the server, and every bad input as a typed error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import fsspec
import numpy as np
import pytest

import vecdr
from vecdr.errors import (
    LockedError,
    NotARepositoryError,
    RepositoryExistsError,
    StoreAccessError,
    StoreError,
    StoreUnreachableError,
)
from vecdr.repository.locks import EXCLUSIVE, Lock, list_locks, unlock
from vecdr.store import FsspecStore, Store, open_store
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.s3 import FaultProxy, LocalS3, Request, iam_user, start
from vecdr.testing.stores import StoreTests

D = 16
VECDR = shutil.which("vecdr", path=str(Path(sys.executable).parent)) or shutil.which("vecdr")


def index_of(n: int, seed: int, start_id: int = 0) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32),
                       np.arange(start_id, start_id + n))
    return index


def bucket_keys(s3: LocalS3, url: str, user: tuple[str, str] = ("", "")) -> list[str]:
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    pages = s3.client(*user).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def bucket_bytes(s3: LocalS3, url: str) -> bytes:
    bucket, _, _ = url.removeprefix("s3://").partition("/")
    client = s3.client()
    return b"".join(client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in bucket_keys(s3, url))


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert VECDR, "the vecdr console script is not installed"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VECDR_"))}
    return subprocess.run([VECDR, *args], capture_output=True, text=True, env={**base, **(env or {})}, timeout=180)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode not in (0, 70), proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vecdr: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# -- the store contract on S3 ---------------------------------------------------------


class TestS3Store(StoreTests):
    @pytest.fixture
    def store(self, s3: LocalS3, s3_url: str) -> Store:
        store = open_store(s3_url, s3.storage_options())
        assert store.atomic_create and store.concurrency == 8
        return store


def test_s3_store_retries_and_types_errors_but_passes_answers_through(s3: LocalS3, s3_url: str) -> None:
    store = open_store(s3_url, s3.storage_options())
    with pytest.raises(FileNotFoundError):
        store.read("absent")
    store.create("k", b"1")
    with pytest.raises(FileExistsError):
        store.create("k", b"2")
    with pytest.raises(vecdr.errors.UsageError, match="names no bucket"):
        open_store("s3://", s3.storage_options())


# -- repositories on S3 -----------------------------------------------------------------


def test_snapshots_restore_bit_for_bit_from_s3(s3: LocalS3, s3_url: str) -> None:
    repo = vecdr.init(s3_url, s3.storage_options())
    assert repo.config.capabilities == {"atomic_create": True}
    first_index = index_of(3000, 1)
    first = vecdr.snapshot(repo, first_index)
    changed = index_of(3000, 1)
    changed.remove_ids(np.arange(0, 30))
    changed.add_with_ids(np.ones((40, D), np.float32), np.arange(5000, 5040))
    second = vecdr.snapshot(repo, changed)
    assert (second.mode, second.added, second.deleted) == ("diff", 40, 30)
    assert second.bytes_written < first.bytes_written / 10
    reopened = vecdr.open_repository(s3_url, s3.storage_options())
    assert_same_rows(faiss_rows(vecdr.restore_index(reopened, first.snapshot)), faiss_rows(first_index))
    assert_same_rows(faiss_rows(vecdr.restore_index(reopened, second.snapshot)), faiss_rows(changed))
    report = vecdr.verify(reopened, read_data=True)
    assert report.ok, report
    assert any(k.endswith(".parquet") for k in bucket_keys(s3, s3_url))


def test_concurrent_writers_commit_linearly_on_s3(s3: LocalS3, s3_url: str) -> None:
    vecdr.init(s3_url, s3.storage_options())
    indexes = [index_of(200, seed, start_id=1000 * seed) for seed in range(8)]
    barrier = threading.Barrier(len(indexes))
    results: list[vecdr.SnapshotResult] = []

    def writer(i: int) -> None:
        repo = vecdr.open_repository(s3_url, s3.storage_options())
        barrier.wait(timeout=60)
        results.append(vecdr.snapshot(repo, indexes[i], collection=f"c{i}"))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(indexes))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.seq for r in results) == list(range(1, len(indexes) + 1))
    repo = vecdr.open_repository(s3_url, s3.storage_options())
    assert len(repo.commits()) == len(indexes)
    for r in results:
        i = int(r.collection[1:])
        restored = vecdr.restore_index(repo, r.snapshot, collection=r.collection)
        assert_same_rows(faiss_rows(restored), faiss_rows(indexes[i]))


# -- configuration ----------------------------------------------------------------------


def test_cli_uses_the_aws_environment_and_prints_no_secret(s3: LocalS3, s3_url: str, tmp_path: Path) -> None:
    faiss.write_index(index_of(500, 3), str(tmp_path / "live.faiss"))
    env = s3.env()
    assert cli("init", s3_url, env=env).returncode == 0
    snap = cli("snapshot", s3_url, f"faiss:{tmp_path / 'live.faiss'}", "--json", env=env)
    assert snap.returncode == 0, snap.stderr
    assert json.loads(snap.stdout)["rows"] == 500
    listed = cli("snapshots", s3_url, "--json", env=env)
    restored = cli("restore", s3_url, "latest", f"faiss:{tmp_path / 'back.faiss'}", "--json", env=env)
    assert restored.returncode == 0, restored.stderr
    assert_same_rows(faiss_rows(faiss.read_index(str(tmp_path / "back.faiss"))), faiss_rows(index_of(500, 3)))
    # The secret reaches s3fs from the environment, and nothing vecdr prints or stores.
    for proc in (snap, listed, restored):
        assert s3.secret not in proc.stdout + proc.stderr
    assert s3.secret.encode() not in bucket_bytes(s3, s3_url)


def test_endpoint_and_region_options_and_a_named_profile(s3: LocalS3, s3_url: str, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[backup]\naws_access_key_id = {s3.key}\naws_secret_access_key = {s3.secret}\n")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_PROFILE": "backup",
           "AWS_CONFIG_FILE": str(tmp_path / "none")}
    proc = cli("--endpoint-url", s3.endpoint, "--region", "us-east-1", "init", s3_url, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["capabilities"] == {"atomic_create": True}
    assert "backups/config.json" in bucket_keys(s3, s3_url)
    # Without the endpoint the client would go to AWS itself: the option is what reached moto.
    lost = cli("--concurrency", "2", "snapshots", s3_url,
               env={**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9", "VECDR_RETRIES": "1"})
    assert_one_line_error(lost, "failed 1 times, giving up")


@pytest.mark.parametrize(
    ("args", "expected"),
    [(["--sse", "AES256"], ("AES256", None)), (["--sse-kms-key-id", "backup-key"], ("aws:kms", "backup-key"))],
    ids=["sse-s3", "sse-kms"],
)
def test_server_side_encryption_applies_to_every_object(
    s3: LocalS3, s3_url: str, tmp_path: Path, args: list[str], expected: tuple[str, str | None]
) -> None:
    faiss.write_index(index_of(300, 4), str(tmp_path / "live.faiss"))
    env = s3.env()
    assert cli(*args, "init", s3_url, env=env).returncode == 0
    proc = cli(*args, "snapshot", s3_url, f"faiss:{tmp_path / 'live.faiss'}", env=env)
    assert proc.returncode == 0, proc.stderr
    bucket = s3_url.removeprefix("s3://").split("/")[0]
    client = s3.client()
    keys = bucket_keys(s3, s3_url)
    assert any(k.startswith("backups/commits/") for k in keys)
    for key in keys:
        head = client.head_object(Bucket=bucket, Key=key)
        assert (head.get("ServerSideEncryption"), head.get("SSEKMSKeyId")) == expected, key


def test_bad_encryption_options_are_usage_errors(s3: LocalS3, s3_url: str) -> None:
    assert_one_line_error(cli("--sse", "rot13", "init", s3_url, env=s3.env()), "server-side encryption")
    with pytest.raises(vecdr.errors.UsageError, match="KMS key"):
        vecdr.init(s3_url, s3.storage_options(sse="AES256", sse_kms_key_id="k"))
    assert bucket_keys(s3, s3_url) == []


# -- faults between vecdr and the server -------------------------------------------------


@pytest.fixture
def proxy(s3: LocalS3) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3.endpoint)
    yield proxy
    proxy.stop()


@pytest.mark.fault("S3 requests throttled, failed, dropped, answered and lost, delayed", store="s3")
def test_snapshots_and_restores_complete_through_flaky_requests(
    s3: LocalS3, s3_url: str, proxy: FaultProxy
) -> None:
    options = s3.storage_options(endpoint=proxy.endpoint)
    repo = vecdr.init(s3_url, options)
    faults: list[str | float] = ["503", "drop", "lost-reply", "500", 0.05]

    def flaky(request: Request) -> str | float:
        # Every fourth request meets a fault, in turn: throttled, dropped, answered and lost, failed, slow.
        return faults[(request.number // 4) % len(faults)] if request.number % 4 == 0 else "pass"

    proxy.plan = flaky
    first_index, second_index = index_of(4000, 5), index_of(4000, 5)
    first = vecdr.snapshot(repo, first_index)
    second_index.remove_ids(np.arange(100))
    second = vecdr.snapshot(repo, second_index)
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, first.snapshot)), faiss_rows(first_index))
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, second.snapshot)), faiss_rows(second_index))
    injected = [a for a in proxy.actions() if a in ("503", "drop", "lost-reply", "500")]
    assert len(injected) >= 8 and {"503", "drop", "lost-reply", "500"} <= set(injected), proxy.actions()
    proxy.plan = lambda request: "pass"
    assert [c.snapshot for c in repo.commits()] == [first.snapshot, second.snapshot]
    assert vecdr.verify(repo, read_data=True).ok


@pytest.mark.fault("outcome-unknown commit (reply lost)", store="s3")
def test_a_commit_whose_reply_is_lost_is_recognised_not_repeated(
    s3: LocalS3, s3_url: str, proxy: FaultProxy
) -> None:
    repo = vecdr.init(s3_url, s3.storage_options(endpoint=proxy.endpoint))
    lost: list[str] = []

    def lose_commit_reply(request: Request) -> str:
        if request.method == "PUT" and "/commits/" in request.path and not lost:
            lost.append(request.path)
            return "lost-reply"  # the record is written; the client never hears so
        return "pass"

    proxy.plan = lose_commit_reply
    result = vecdr.snapshot(repo, index_of(100, 6))
    assert lost and result.seq == 1
    commits = [k for k in bucket_keys(s3, s3_url) if "/commits/" in k]
    assert commits == ["backups/commits/00000000000000000001.json"]
    assert [c.snapshot for c in repo.commits()] == [result.snapshot]


@pytest.mark.fault("a segment upload that keeps failing", store="s3")
def test_a_segment_that_keeps_failing_fails_the_snapshot_cleanly(
    s3: LocalS3, s3_url: str, proxy: FaultProxy
) -> None:
    # Two attempts by botocore within each of vecdr's three: six PUTs of the segment, then give up.
    options = s3.storage_options(endpoint=proxy.endpoint, retries=3,
                                 config_kwargs={"retries": {"total_max_attempts": 2}})
    repo = vecdr.init(s3_url, options)
    first = vecdr.snapshot(repo, index_of(500, 7))
    proxy.plan = lambda r: "500" if r.method == "PUT" and "/segments/" in r.path else "pass"
    with pytest.raises(StoreUnreachableError, match=r"writing s3://.*/segments/.*failed 3 times, giving up"):
        vecdr.snapshot(repo, index_of(500, 8))
    failed = [r for r, action in proxy.seen if action == "500"]
    assert len(failed) == 6 and len({r.path for r in failed}) == 1  # one segment, retried, with a limit
    proxy.plan = lambda r: "pass"
    assert [c.snapshot for c in repo.commits()] == [first.snapshot]
    assert not any("/manifests/" in k and first.snapshot not in k for k in bucket_keys(s3, s3_url))
    again = vecdr.snapshot(repo, index_of(500, 8))
    assert again.parent == first.snapshot
    assert_same_rows(faiss_rows(vecdr.restore_index(repo, again.snapshot)), faiss_rows(index_of(500, 8)))


@pytest.mark.fault("access denied on write (permanent)", store="s3")
def test_a_permanent_error_fails_fast_with_the_key(s3: LocalS3, s3_url: str, proxy: FaultProxy) -> None:
    repo = vecdr.init(s3_url, s3.storage_options(endpoint=proxy.endpoint))

    def deny_manifests(request: Request) -> str:
        return "403" if request.method == "PUT" and "/manifests/" in request.path else "pass"

    proxy.plan = deny_manifests
    started = time.monotonic()
    with pytest.raises(StoreAccessError, match=r"writing s3://.*/manifests/\w+\.json: .*denied"):
        vecdr.snapshot(repo, index_of(50, 9))
    assert time.monotonic() - started < 10
    assert len([a for r, a in proxy.seen if a == "403"]) == 1  # not retried
    assert repo.commits() == []


# -- bad input ----------------------------------------------------------------------------


def test_missing_bucket_unreachable_endpoint_and_foreign_prefix(s3: LocalS3, s3_url: str) -> None:
    options = s3.storage_options()
    nobucket = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/backups"
    with pytest.raises(NotARepositoryError, match="bucket does not exist"):
        vecdr.open_repository(nobucket, options)
    with pytest.raises(StoreError, match="bucket does not exist"):
        vecdr.init(nobucket, options)
    with pytest.raises(StoreUnreachableError, match="giving up"):
        vecdr.open_repository(s3_url, s3.storage_options(endpoint="http://127.0.0.1:9", retries=2,
                                                         config_kwargs={"retries": {"total_max_attempts": 1}}))
    bucket = s3_url.removeprefix("s3://").split("/")[0]
    s3.client().put_object(Bucket=bucket, Key="backups/photos/cat.jpg", Body=b"not a repository")
    with pytest.raises(NotARepositoryError, match="no config.json"):
        vecdr.open_repository(s3_url, options)
    with pytest.raises(RepositoryExistsError, match="not empty"):
        vecdr.init(s3_url, options)
    assert bucket_keys(s3, s3_url) == ["backups/photos/cat.jpg"]
    env = s3.env()
    assert_one_line_error(cli("snapshots", nobucket, env=env), "bucket does not exist")
    assert_one_line_error(cli("init", nobucket, env=env), "bucket does not exist")
    assert_one_line_error(cli("init", s3_url, env=env), "not empty")
    assert_one_line_error(cli("snapshots", s3_url, env=env), "not a vecdr repository")


def test_a_failed_init_leaves_nothing_behind(s3: LocalS3, s3_url: str, proxy: FaultProxy) -> None:
    proxy.plan = lambda r: "403" if r.method == "PUT" and r.path.endswith("/config.json") else "pass"
    with pytest.raises(StoreAccessError):
        vecdr.init(s3_url, s3.storage_options(endpoint=proxy.endpoint))
    assert any(r.method == "PUT" and "/locks/probe-" in r.path for r, _ in proxy.seen)  # the probe was made
    assert bucket_keys(s3, s3_url) == []  # and removed


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[LocalS3, dict[str, tuple[str, str]]]]:
    """A second server that checks credentials, with a read-write and a read-only user."""
    server = start(free_requests=7)
    try:
        bucket = server.make_bucket("guarded")
        users = {
            "rw": iam_user(server, "writer", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}),
            # Read-only as AWS's AmazonS3ReadOnlyAccess words it, with Head* for the moto releases
            # that check a HEAD against its operation name; List* covers both s3:ListBucket (AWS)
            # and s3:ListObjectsV2 (what moto 5.2.6 checks a listing against).
            "ro": iam_user(server, "reader", {"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:Get*", "s3:List*", "s3:Head*"], "Resource": "*"}]}),
        }
        assert bucket == "guarded"
        yield server, users
    finally:
        server.stop()


def test_wrong_credentials_and_denied_writes(guarded: tuple[LocalS3, dict[str, tuple[str, str]]]) -> None:
    server, users = guarded
    url = f"s3://guarded/{uuid.uuid4().hex[:8]}"

    def options(user: str) -> dict[str, Any]:
        key, secret = users[user]
        return {"endpoint_url": server.endpoint, "key": key, "secret": secret, "region": "us-east-1"}

    repo = vecdr.init(url, options("rw"))
    first = vecdr.snapshot(repo, index_of(100, 10))
    wrong = {**options("rw"), "secret": "not-the-secret"}
    with pytest.raises(StoreAccessError) as caught:
        vecdr.open_repository(url, wrong)
    assert "not-the-secret" not in str(caught.value)
    reader = vecdr.open_repository(url, options("ro"))
    assert [c.snapshot for c in reader.commits()] == [first.snapshot]  # reading is allowed
    with pytest.raises(StoreAccessError, match="denied"):
        vecdr.snapshot(reader, index_of(100, 11))
    with pytest.raises(StoreAccessError):
        vecdr.init(f"s3://guarded/{uuid.uuid4().hex[:8]}", options("ro"))
    assert [c.snapshot for c in vecdr.open_repository(url, options("rw")).commits()] == [first.snapshot]
    env = {"AWS_ACCESS_KEY_ID": users["rw"][0], "AWS_SECRET_ACCESS_KEY": "not-the-secret",
           "AWS_ENDPOINT_URL": server.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    line = assert_one_line_error(cli("snapshots", url, env=env))
    assert "not-the-secret" not in line


def test_read_only_credentials_restore_verify_and_drill_but_write_nothing(
    guarded: tuple[LocalS3, dict[str, tuple[str, str]]], tmp_path: Path
) -> None:
    """A DR host given only read access recovers and measures; nothing it does writes."""
    server, users = guarded
    url = f"s3://guarded/{uuid.uuid4().hex[:8]}"
    options = {"endpoint_url": server.endpoint, "region": "us-east-1"}
    source = index_of(300, 12)
    first = vecdr.snapshot(vecdr.init(url, {**options, "key": users["rw"][0], "secret": users["rw"][1]}), source)
    before = bucket_keys(server, url, users["rw"])
    reader = vecdr.open_repository(url, {**options, "key": users["ro"][0], "secret": users["ro"][1]})

    restored = vecdr.restore(reader, f"faiss:{tmp_path / 'restored.faiss'}")
    assert (restored.snapshot, restored.rows) == (first.snapshot, 300)
    assert_same_rows(faiss_rows(faiss.read_index(str(tmp_path / "restored.faiss"))), faiss_rows(source))
    assert vecdr.verify(reader, read_data=True).ok
    assert vecdr.drill(reader, record=False).rows_restored == 300
    with pytest.raises(StoreAccessError, match=r"the drill ran \(passed, RTO .*\(--no-record\)"):
        vecdr.drill(reader)
    env = {"AWS_ACCESS_KEY_ID": users["ro"][0], "AWS_SECRET_ACCESS_KEY": users["ro"][1],
           "AWS_ENDPOINT_URL": server.endpoint, "AWS_DEFAULT_REGION": "us-east-1"}
    drilled = cli("drill", "--no-record", "--json", url, env=env)
    assert drilled.returncode == 0, drilled.stderr
    assert json.loads(drilled.stdout)["history_key"] is None
    assert_one_line_error(cli("drill", url, env=env), "--no-record")
    assert bucket_keys(server, url, users["rw"]) == before


# -- locks ---------------------------------------------------------------------------------


def test_an_exclusive_lock_excludes_others_until_released(s3: LocalS3, s3_url: str) -> None:
    store = vecdr.init(s3_url, s3.storage_options()).store
    with Lock(store, "exclusive", "prune"):
        with pytest.raises(LockedError, match=r"exclusive lock of .* \(prune\)"):
            Lock(store, "exclusive", "forget").acquire()
        with pytest.raises(LockedError):
            Lock(store, "shared", "snapshot").acquire()
        assert [lock.kind for lock in list_locks(store)] == ["exclusive"]
    shared = Lock(store, "shared", "snapshot").acquire()
    with pytest.raises(LockedError, match="shared lock"):
        Lock(store, "exclusive", "prune").acquire()
    assert not store.exists(EXCLUSIVE)  # the refused exclusive lock was given back
    shared.release()
    assert list_locks(store) == []


def test_a_heartbeat_keeps_a_lock_alive_and_a_dead_holders_lock_goes_stale(
    s3: LocalS3, s3_url: str
) -> None:
    store = vecdr.init(s3_url, s3.storage_options()).store
    with Lock(store, "exclusive", "prune", ttl=1.0):
        time.sleep(2.5)  # beyond the ttl: the heartbeat renewed it
        (held,) = list_locks(store)
        assert not held.stale()
        assert unlock(store) == []
    dead = Lock(store, "exclusive", "prune", ttl=0.5)
    dead.acquire()
    dead._stop.set()  # the holder dies: no more heartbeats, no release
    time.sleep(1.0)
    with pytest.raises(LockedError, match="stale: remove it with `vecdr unlock`"):
        Lock(store, "exclusive", "prune").acquire()
    env = s3.env()
    proc = cli("unlock", s3_url, "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    assert [lock["stale"] for lock in json.loads(proc.stdout)["removed"]] == [True]
    with Lock(store, "exclusive", "prune"):
        pass


def test_a_store_without_atomic_create_snapshots_one_writer_at_a_time(tmp_path: Path) -> None:
    root = tmp_path / "plain"
    store = FsspecStore(fsspec.filesystem("file", auto_mkdir=True), str(root), f"file-plain://{root}")
    assert not store.atomic_create
    from vecdr.repository import Repository
    from vecdr.repository.repository import CONFIG, probe_atomic_create

    assert probe_atomic_create(store) is False
    from vecdr.format.records import Config

    config = Config(id=uuid.uuid4().hex, created_at="2026-01-01T00:00:00Z", capabilities={"atomic_create": False})
    store.create(CONFIG, config.to_bytes())
    repo = Repository(store, Config.from_bytes(store.read(CONFIG)))
    first = vecdr.snapshot(repo, index_of(100, 12))
    assert list_locks(store) == []  # taken and released
    with Lock(store, "exclusive", "another writer"), pytest.raises(LockedError, match="another writer"):
        vecdr.snapshot(repo, index_of(100, 13))
    assert [c.snapshot for c in repo.commits()] == [first.snapshot]
