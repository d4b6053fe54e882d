"""Bad input at scale: one table of bad inputs, each given to the API and to the real
console script. Each must give a typed vecdr error (the CLI: one ``vecdr: error:``
line, a status neither 0 nor 70) and leave every repository byte for byte as it was.

The console script runs once per case, several at a time (its start-up dominates).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import vecdr
from vecdr.errors import (
    CollectionError,
    DecryptionError,
    DimensionMismatchError,
    DuplicateIdError,
    IntegrityError,
    KeyRequiredError,
    LossyIndexError,
    NonFiniteVectorError,
    NotARepositoryError,
    RepositoryExistsError,
    SchemaError,
    SnapshotNotFoundError,
    SourceError,
    StoreError,
    StoreUnreachableError,
    TargetError,
    TargetExistsError,
    UnknownSchemeError,
    UnsupportedFormatError,
    UsageError,
    VecdrError,
    WrongKeyError,
)
from vecdr.format.hashing import sha256_hex
from vecdr.store import keys
from vecdr.testing.cli import assert_one_line_error, run

D = 8
KEY = "3c" * 32
NOT_UTF8 = "\udcff"  # how Python holds the byte 0xff of a command line or file name


@dataclass(frozen=True)
class World:
    """A folder with a plain repository (``repo``: one snapshot, tag ``base``, with a
    native blob), an encrypted one (``enc``) and source files."""

    root: Path

    def __getattr__(self, name: str) -> str:
        return str(self.root / name.replace("_", "."))

    @property
    def manifest(self) -> Path:
        return self.root / "repo" / json.loads(self.commit.read_bytes())["manifest"]["key"]

    @property
    def commit(self) -> Path:
        return next((self.root / "repo" / "commits").iterdir())

    def doc(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest.read_bytes()))

    def object(self, kind: str) -> Path:
        doc = self.doc()
        key = doc["segments"][0]["object"]["key"] if kind == "segment" else doc["artifacts"][kind]["key"]
        return self.root / "repo" / key

    def rewrite_manifest(self, edit: Callable[[dict[str, Any]], None]) -> None:
        """Edit the manifest and make the commit record's hash agree (so only the edit is wrong)."""
        doc = self.doc()
        edit(doc)
        data = json.dumps(doc).encode()
        self.manifest.write_bytes(data)
        record = json.loads(self.commit.read_bytes())
        record["manifest"].update(sha256=sha256_hex(data), size=len(data))
        self.commit.write_bytes(json.dumps(record).encode())


def _vectors(n: int, d: int) -> pa.Array:
    flat = np.random.default_rng(n + d).standard_normal(n * d).astype(np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat), d)


def _flat(n: int, d: int = D, nan: bool = False) -> faiss.Index:
    vectors = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    if nan:
        vectors[3, 1] = np.nan
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(d))
    index.add_with_ids(vectors, np.arange(n))
    return index


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("template")
    faiss.write_index(_flat(300), str(root / "live.faiss"))
    vecdr.snapshot(vecdr.init(root / "repo"), f"faiss:{root / 'live.faiss'}", tags=["base"], with_index=True)
    encrypted = vecdr.init(root / "enc", encrypt=True, key=KEY)
    vecdr.snapshot(encrypted, _flat(200), collection="live")
    faiss.write_index(_flat(50, nan=True), str(root / "nan.faiss"))
    faiss.write_index(_flat(50, d=4), str(root / "narrow.faiss"))
    lossy = faiss.index_factory(D, "PQ2x4")
    lossy.train(np.random.default_rng(1).standard_normal((300, D)).astype(np.float32))
    lossy.add(np.random.default_rng(2).standard_normal((300, D)).astype(np.float32))
    faiss.write_index(lossy, str(root / "lossy.faiss"))
    (root / "random.bin").write_bytes(np.random.default_rng(3).bytes(4096))
    (root / "empty.bin").write_bytes(b"")
    ids = pa.array([1, 2], pa.int64())
    pq.write_table(pa.table({"id": pa.array([], pa.int64()), "vector": pa.array([], pa.list_(pa.float32()))}),
                   root / "norows.parquet")
    pq.write_table(pa.table({"id": ids, "vector": pa.array([[], []], pa.list_(pa.float32()))}), root / "zero.parquet")
    pq.write_table(pa.table({"id": ids, "vector": _vectors(2, 70_000)}), root / "huge.parquet")
    not_utf8 = pa.Array.from_buffers(pa.string(), 2, [None, pa.py_buffer(np.array([0, 1, 2], np.int32).tobytes()),
                                                      pa.py_buffer(b"\xff\xfe")])
    pq.write_table(pa.table({"id": not_utf8, "vector": _vectors(2, D)}), root / "notutf8.parquet")
    pq.write_table(pa.table({"id": pa.array([b"a", b"b"]), "vector": _vectors(2, D)}), root / "binary.parquet")
    pq.write_table(pa.table({"id": pa.array([7, 7], pa.int64()), "vector": _vectors(2, D)}), root / "dup.parquet")
    pq.write_table(pa.table({"id": pa.array([1, 2**64 - 1], pa.uint64()), "vector": _vectors(2, D)}),
                   root / "uint64.parquet")
    pq.write_table(pa.table({"id": pa.array(["x", "x\0"]), "vector": _vectors(2, D)}), root / "nul.parquet")
    (root / "folder").mkdir()
    return root


def _future(doc: dict[str, Any]) -> None:
    doc["format"] = 99


def _config(world: World, edit: Callable[[dict[str, Any]], None]) -> None:
    path = world.root / "repo" / "config.json"
    doc = json.loads(path.read_bytes())
    edit(doc)
    path.write_bytes(json.dumps(doc).encode())


def _random(path: Path) -> None:
    path.write_bytes(np.random.default_rng(4).bytes(max(64, path.stat().st_size)))


def _flip_encrypted_segment(world: World) -> None:
    segment = next((world.root / "enc" / "segments").rglob("*.parquet"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 1
    segment.write_bytes(bytes(data))


@dataclass(frozen=True)
class Case:
    id: str
    error: type[VecdrError]
    #: The call through the API (None: the API cannot be given this input).
    api: Callable[[World], Any] | None
    #: The console script's arguments (None: the command line cannot express it).
    cli: Callable[[World], list[str]] | None
    damage: Callable[[World], None] = lambda world: None
    env: dict[str, str] = field(default_factory=dict)
    #: The reliability report's row for this case (``make reliability``), where it has one.
    fault: str | None = None


def restore(world: World, **kw: Any) -> Any:
    return vecdr.restore(world.repo, f"faiss:{world.root / 'out.faiss'}", **kw)


def _nul_ids(world: World) -> None:
    vecdr.snapshot(world.repo, f"parquet:{world.nul_parquet}", collection="nul")


def _link_to_repo(world: World) -> None:
    (world.root / "link").symlink_to(world.root / "repo", target_is_directory=True)


CASES = [
    # -- repository URIs and storage options
    Case("repo-missing", NotARepositoryError, lambda w: vecdr.snapshots(w.nope), lambda w: ["snapshots", w.nope]),
    Case("repo-is-a-file", NotARepositoryError, lambda w: vecdr.snapshots(w.live_faiss),
         lambda w: ["snapshots", w.live_faiss]),
    Case("repo-empty-string", UsageError, lambda w: vecdr.snapshots(""), lambda w: ["snapshots", ""]),
    Case("repo-not-utf8", NotARepositoryError, lambda w: vecdr.snapshots(w.root / NOT_UTF8),
         lambda w: ["snapshots", str(w.root / NOT_UTF8)]),
    Case("repo-unknown-scheme", StoreError, lambda w: vecdr.snapshots("nosuch://bucket/x"),
         lambda w: ["snapshots", "nosuch://bucket/x"]),
    Case("repo-s3-without-bucket", UsageError, lambda w: vecdr.snapshots("s3://"), lambda w: ["snapshots", "s3://"]),
    Case("repo-wrong-type", UsageError, lambda w: vecdr.snapshots(42), None),  # type: ignore[arg-type]
    Case("storage-option-zero-concurrency", UsageError, lambda w: vecdr.open_repository(w.repo, {"concurrency": 0}),
         lambda w: ["--concurrency", "0", "snapshots", w.repo]),
    Case("storage-option-bad-sse", UsageError, lambda w: vecdr.open_repository("s3://b/p", {"sse": "rot13"}),
         lambda w: ["--sse", "rot13", "snapshots", "s3://b/p"]),
    Case("storage-option-for-another-store", UsageError,
         lambda w: vecdr.open_repository(w.repo, {"endpoint_url": "http://x"}), None),
    # -- sources
    Case("source-without-scheme", UnknownSchemeError, lambda w: vecdr.snapshot(w.repo, w.live_faiss),
         lambda w: ["snapshot", w.repo, w.live_faiss]),
    Case("source-unknown-scheme", UnknownSchemeError, lambda w: vecdr.snapshot(w.repo, "annoy:x.ann"),
         lambda w: ["snapshot", w.repo, "annoy:x.ann"]),
    Case("source-missing-file", SourceError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.missing_faiss}"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.missing_faiss}"]),
    Case("source-random-bytes", SourceError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.random_bin}"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.random_bin}"]),
    Case("source-empty-file", SourceError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.empty_bin}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.empty_bin}"]),
    Case("source-without-rows", SchemaError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.norows_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.norows_parquet}"]),
    Case("source-zero-dimension", SchemaError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.zero_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.zero_parquet}"]),
    Case("source-huge-dimension", SchemaError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.huge_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.huge_parquet}"]),
    Case("source-ids-not-utf8", SchemaError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.notutf8_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.notutf8_parquet}"]),
    Case("source-binary-ids", SchemaError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.binary_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.binary_parquet}"]),
    Case("source-duplicate-ids", DuplicateIdError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.dup_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.dup_parquet}"]),
    Case("source-nan-vector", NonFiniteVectorError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.nan_faiss}"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.nan_faiss}"]),
    Case("source-other-dimension", DimensionMismatchError,
         lambda w: vecdr.snapshot(w.repo, f"faiss:{w.narrow_faiss}", collection="live"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.narrow_faiss}", "--collection", "live"]),
    Case("source-lossy-without-embeddings", LossyIndexError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.lossy_faiss}"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.lossy_faiss}"]),
    Case("source-wrong-type", UsageError, lambda w: vecdr.snapshot(w.repo, 42), None),
    Case("collection-not-utf8", UsageError,
         lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}", collection=NOT_UTF8),
         lambda w: ["snapshot", w.repo, f"faiss:{w.live_faiss}", "--collection", NOT_UTF8]),
    Case("tag-empty", UsageError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}", tags=[""]),
         lambda w: ["snapshot", w.repo, f"faiss:{w.live_faiss}", "--tag", ""]),
    Case("tags-a-string", UsageError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}", tags="nightly"), None),
    Case("mode-unknown", UsageError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}", mode="sometimes"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.live_faiss}", "--mode", "sometimes"]),
    Case("embeddings-for-parquet", UsageError,
         lambda w: vecdr.snapshot(w.repo, f"parquet:{w.dup_parquet}", embeddings=w.random_bin),
         lambda w: ["snapshot", w.repo, f"parquet:{w.dup_parquet}", "--embeddings", w.random_bin]),
    # -- snapshot references and restore targets
    Case("snapshot-unknown", SnapshotNotFoundError, lambda w: restore(w, snapshot="nosuch"),
         lambda w: ["restore", w.repo, "nosuch", f"faiss:{w.out_faiss}"]),
    Case("collection-unknown", CollectionError, lambda w: vecdr.snapshots(w.repo, "nosuch"),
         lambda w: ["snapshots", w.repo, "--collection", "nosuch"]),
    Case("as-of-not-a-time", SnapshotNotFoundError, lambda w: restore(w, snapshot=None, as_of="last tuesday"),
         lambda w: ["restore", w.repo, f"faiss:{w.out_faiss}", "--as-of", "last tuesday"]),
    Case("snapshot-and-as-of", UsageError, lambda w: restore(w, snapshot="base", as_of="2020-01-01"),
         lambda w: ["restore", w.repo, "base", f"faiss:{w.out_faiss}", "--as-of", "2020-01-01"]),
    Case("target-unknown-scheme", UnknownSchemeError, lambda w: vecdr.restore(w.repo, "annoy:x.ann"),
         lambda w: ["restore", w.repo, "latest", "annoy:x.ann"]),
    Case("target-exists", TargetExistsError, lambda w: vecdr.restore(w.repo, f"faiss:{w.live_faiss}"),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.live_faiss}"]),
    Case("target-unknown-option", UsageError, lambda w: vecdr.restore(w.repo, f"faiss:{w.out_faiss}?speed=max"),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}?speed=max"]),
    Case("target-bad-factory", SchemaError, lambda w: restore(w, factory="NoSuchIndex"),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}", "--index-factory", "NoSuchIndex"]),
    Case("target-bad-gpu-mode", UsageError, lambda w: restore(w, gpu="sometimes"),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}", "--gpu", "sometimes"]),
    Case("target-wrong-type", UsageError, lambda w: vecdr.restore(w.repo, 3.5), None),
    # -- retention
    Case("keep-last-negative", UsageError, lambda w: vecdr.forget(w.repo, keep_last=-1),
         lambda w: ["forget", w.repo, "--keep-last", "-1"]),
    Case("keep-last-not-a-number", UsageError, lambda w: vecdr.forget(w.repo, keep_last="3"),
         lambda w: ["forget", w.repo, "--keep-last", "three"]),
    Case("keep-within-not-a-duration", UsageError, lambda w: vecdr.forget(w.repo, keep_within="7x"),
         lambda w: ["forget", w.repo, "--keep-within", "7x"]),
    Case("forget-without-policy", UsageError, lambda w: vecdr.forget(w.repo), lambda w: ["forget", w.repo]),
    Case("grace-not-a-duration", UsageError, lambda w: vecdr.prune(w.repo, grace="soon"),
         lambda w: ["prune", w.repo, "--grace", "soon"]),
    # -- damaged repositories
    Case("manifest-random-bytes", IntegrityError, restore,
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}"],
         damage=lambda w: _random(w.manifest)),
    Case("manifest-from-the-future", UnsupportedFormatError, restore,
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}"], damage=lambda w: w.rewrite_manifest(_future)),
    Case("manifest-names-a-path-outside", IntegrityError, restore,
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}"],
         damage=lambda w: w.rewrite_manifest(lambda doc: doc["segments"][0]["object"].update(key="../../x.parquet"))),
    Case("commit-random-bytes", IntegrityError, restore,
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}"], damage=lambda w: _random(w.commit)),
    Case("segment-random-bytes", IntegrityError, lambda w: vecdr.export(w.repo, "latest", w.out_parquet),
         lambda w: ["export", w.repo, "latest", w.out_parquet], damage=lambda w: _random(w.object("segment"))),
    Case("native-blob-random-bytes", IntegrityError, restore,
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}"],
         damage=lambda w: _random(w.object("native_index"))),
    Case("segment-missing", IntegrityError, lambda w: vecdr.export(w.repo, "latest", w.out_parquet),
         lambda w: ["export", w.repo, "latest", w.out_parquet], damage=lambda w: w.object("segment").unlink()),
    Case("config-random-bytes", IntegrityError, lambda w: vecdr.snapshots(w.repo), lambda w: ["snapshots", w.repo],
         damage=lambda w: _random(w.root / "repo" / "config.json")),
    Case("config-from-the-future", UnsupportedFormatError, lambda w: vecdr.snapshots(w.repo),
         lambda w: ["snapshots", w.repo], damage=lambda w: _config(w, _future)),
    Case("config-requires-a-new-feature", UnsupportedFormatError, lambda w: vecdr.snapshots(w.repo),
         lambda w: ["snapshots", w.repo], damage=lambda w: _config(w, lambda doc: doc.update(requires=["sharding"]))),
    Case("init-where-a-repository-is", RepositoryExistsError, lambda w: vecdr.init(w.repo), lambda w: ["init", w.repo]),
    # -- keys
    Case("encrypted-without-key", KeyRequiredError, lambda w: vecdr.snapshots(w.enc), lambda w: ["snapshots", w.enc]),
    Case("encrypted-wrong-key", WrongKeyError, lambda w: vecdr.snapshots(w.enc, ), lambda w: ["snapshots", w.enc],
         env={keys.KEY_ENV: "00" * 32}),
    Case("encrypted-tampered-segment", DecryptionError, lambda w: vecdr.export(w.enc, "latest", w.out_parquet),
         lambda w: ["export", w.enc, "latest", w.out_parquet], damage=_flip_encrypted_segment,
         env={keys.KEY_ENV: KEY}),
    Case("encrypt-without-key", KeyRequiredError, lambda w: vecdr.init(w.new, encrypt=True),
         lambda w: ["init", "--encrypt", w.new]),
    Case("key-for-a-plain-repository", UsageError, lambda w: vecdr.snapshots(w.repo), lambda w: ["snapshots", w.repo],
         env={keys.PASSWORD_ENV: "hunter2"}),
    # -- ordinary mistakes that once ended in "unexpected …" (status 70), or worse
    Case("target-metric-unknown", UsageError, lambda w: vecdr.restore(w.repo, f"faiss:{w.out_faiss}?metric=COS"),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}?metric=COS"], fault="unknown FAISS metric"),
    Case("target-factory-more-centroids-than-rows", TargetError, lambda w: restore(w, factory="IVF4096,PQ8"),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.out_faiss}", "--index-factory", "IVF4096,PQ8"],
         fault="index factory that cannot train on the snapshot's rows"),
    Case("source-uint64-ids-above-int64", SchemaError, lambda w: vecdr.snapshot(w.repo, f"parquet:{w.uint64_parquet}"),
         lambda w: ["snapshot", w.repo, f"parquet:{w.uint64_parquet}"], fault="uint64 ids above the int64 maximum"),
    Case("target-is-a-folder", TargetError, lambda w: vecdr.restore(w.repo, f"faiss:{w.folder}", force=True),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.folder}", "--force"], fault="a folder as the target"),
    Case("parquet-target-is-a-folder", TargetError,
         lambda w: vecdr.restore(w.repo, f"parquet:{w.folder}", force=True),
         lambda w: ["restore", w.repo, "latest", f"parquet:{w.folder}", "--force"],
         fault="a folder as a parquet target"),
    Case("target-empty-path", UsageError, lambda w: vecdr.restore(w.repo, "faiss:", force=True),
         lambda w: ["restore", w.repo, "latest", "faiss:", "--force"], fault="a target URI with an empty path"),
    Case("source-empty-path", UsageError, lambda w: vecdr.snapshot(w.repo, "faiss:"),
         lambda w: ["snapshot", w.repo, "faiss:"], fault="a source URI with an empty path"),
    Case("init-ftp-unreachable", StoreUnreachableError, lambda w: vecdr.init("ftp://vecdr-test.invalid/x"),
         lambda w: ["init", "ftp://vecdr-test.invalid/x"], fault="init ftp:// on a host that does not resolve"),
    Case("init-http", UsageError, lambda w: vecdr.init("http://vecdr-test.invalid/x"),
         lambda w: ["init", "http://vecdr-test.invalid/x"], fault="init http://"),
    Case("open-https", UsageError, lambda w: vecdr.snapshots("https://vecdr-test.invalid/x"),
         lambda w: ["snapshots", "https://vecdr-test.invalid/x"], fault="a repository at https://"),
    Case("drill-target-parquet", UsageError, lambda w: vecdr.drill(w.repo, target=f"parquet:{w.out_parquet}"),
         lambda w: ["drill", w.repo, "--target", f"parquet:{w.out_parquet}"], fault="drill --target parquet:"),
    Case("drill-report-missing-folder", UsageError, None,
         lambda w: ["drill", w.repo, "--report", f"{w.root}/missing/drill.md"],
         fault="drill --report into a missing folder (refused before the drill)"),
    Case("status-prometheus-missing-folder", UsageError, None,
         lambda w: ["status", w.repo, "--prometheus", f"{w.root}/missing/vecdr.prom"],
         fault="status --prometheus into a missing folder"),
    Case("export-npy-ids-ending-in-nul", SchemaError,
         lambda w: vecdr.export(w.repo, "latest", w.out_npy, collection="nul"),
         lambda w: ["export", w.repo, "latest", w.out_npy, "-c", "nul"], damage=_nul_ids,
         fault="string ids ending in NUL exported to .npy"),
    Case("restore-into-the-repository", TargetError,
         lambda w: vecdr.restore(w.repo, f"faiss:{w.repo}/config.json", force=True),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.repo}/config.json", "--force"],
         fault="restore --force into a file of the repository"),
    Case("restore-through-a-link-into-the-repository", TargetError,
         lambda w: vecdr.restore(w.repo, f"faiss:{w.link}/config.json", force=True),
         lambda w: ["restore", w.repo, "latest", f"faiss:{w.link}/config.json", "--force"], damage=_link_to_repo,
         fault="restore --force through a symlink into the repository"),
    Case("export-into-the-repository", TargetError,
         lambda w: vecdr.export(w.repo, "latest", f"{w.repo}/segments/x.parquet", force=True),
         lambda w: ["export", w.repo, "latest", f"{w.repo}/segments/x.parquet", "--force"],
         fault="export into the repository"),
    Case("drill-target-in-the-repository", TargetError, lambda w: vecdr.drill(w.repo, target=f"faiss:{w.repo}/x"),
         lambda w: ["drill", w.repo, "--target", f"faiss:{w.repo}/x"], fault="drill --target inside the repository"),
    Case("drill-report-in-the-repository", TargetError, None,
         lambda w: ["drill", w.repo, "--report", f"{w.repo}/config.json"], fault="drill --report into the repository"),
    Case("status-prometheus-in-the-repository", TargetError, None,
         lambda w: ["status", w.repo, "--prometheus", f"{w.repo}/config.json"],
         fault="status --prometheus into the repository"),
    Case("export-to-a-folder", TargetError, lambda w: vecdr.export(w.repo, "latest", w.folder, force=True),
         lambda w: ["export", w.repo, "latest", w.folder, "--force"], fault="export --force to a folder"),
    Case("export-npy-to-a-folder", TargetError,
         lambda w: vecdr.export(w.repo, "latest", f"{w.folder}/x.npy", force=True),
         lambda w: ["export", w.repo, "latest", f"{w.folder}/x.npy", "--force"],
         damage=lambda w: (w.root / "folder" / "x.npy").mkdir(), fault="export --force to a folder named .npy"),
    Case("export-empty-destination", UsageError, lambda w: vecdr.export(w.repo, "latest", ""),
         lambda w: ["export", w.repo, "latest", ""], fault="export to an empty path"),
    Case("policy-is-a-folder", UsageError, lambda w: vecdr.status(w.repo, w.folder),
         lambda w: ["status", w.repo, "--policy", w.folder], fault="a folder as the policy file"),
    Case("source-journal-is-a-file", SourceError,
         lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}?journal={w.random_bin}"),
         lambda w: ["snapshot", w.repo, f"faiss:{w.live_faiss}?journal={w.random_bin}"],
         fault="a file as the FAISS journal folder"),
    Case("endpoint-not-a-url", UsageError, None, lambda w: ["--endpoint-url", "notaurl", "snapshots", "s3://b/p"],
         fault="--endpoint-url that is not a URL"),
    Case("endpoint-bad-ipv6", UsageError, None, lambda w: ["--endpoint-url", "http://[::1", "snapshots", "s3://b/p"],
         fault="--endpoint-url with a broken IPv6 host"),
    Case("keep-within-too-long", UsageError, lambda w: vecdr.forget(w.repo, keep_within="99999999999999y"),
         lambda w: ["forget", w.repo, "--keep-within", "99999999999999y"], fault="--keep-within beyond any date"),
    Case("grace-too-long", UsageError, lambda w: vecdr.prune(w.repo, grace="99999999999999y"),
         lambda w: ["prune", w.repo, "--grace", "99999999999999y"], fault="--grace beyond any date"),
    Case("forget-snapshots-a-string", UsageError, lambda w: vecdr.forget(w.repo, "base"), None,  # type: ignore[arg-type]
         fault="forget given one string as its list of snapshots"),
    Case("snapshot-reference-empty", UsageError, lambda w: restore(w, snapshot=""),
         lambda w: ["forget", w.repo, ""], fault="empty snapshot reference (catalogue)"),
    Case("tag-latest", UsageError, lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}", tags=["latest"]),
         lambda w: ["snapshot", w.repo, f"faiss:{w.live_faiss}", "--tag", "latest"], fault="tag latest (catalogue)"),
    Case("keep-tag-unknown", UsageError, lambda w: vecdr.forget(w.repo, keep_tags=["bsae"]),
         lambda w: ["forget", w.repo, "--keep-tag", "bsae"], fault="--keep-tag that no snapshot carries (catalogue)"),
    Case("quality-sample-too-large", UsageError,
         lambda w: vecdr.snapshot(w.repo, f"faiss:{w.live_faiss}", quality_sample=1_000_000),
         lambda w: ["snapshot", w.repo, f"faiss:{w.live_faiss}", "--quality-sample", "1000000"],
         fault="--quality-sample 1,000,000 (catalogue)"),
]


def _world(template: Path, root: Path, case: Case) -> World:
    shutil.copytree(template, root)
    world = World(root)
    case.damage(world)
    return world


def listing(world: World) -> dict[str, str]:
    """Every file of the world (both repositories and the sources) and the sha256 of its bytes."""
    return {
        str(p.relative_to(world.root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(world.root.rglob("*"))
        if p.is_file()
    }


def test_the_table_is_large_and_covers_both_ways_in() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 30
    assert sum(c.api is not None and c.cli is not None for c in CASES) >= 30


def _params(ways: str) -> list[Any]:
    """The cases with an ``api`` or ``cli`` way in, each with its reliability row where it has one."""
    return [pytest.param(c, id=c.id, marks=[pytest.mark.fault(f"bad input ({ways}): {c.fault}")] if c.fault else [])
            for c in CASES if getattr(c, ways) is not None]


@pytest.mark.parametrize("case", _params("api"))
def test_the_api_raises_a_typed_error_and_changes_nothing(
    case: Case, template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (keys.KEY_ENV, keys.PASSWORD_ENV, "VECDR_REPOSITORY", "VECDR_CONCURRENCY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)
    world = _world(template, tmp_path / "w", case)
    before = listing(world)
    assert case.api is not None
    with pytest.raises(case.error) as caught:
        case.api(world)
    assert isinstance(caught.value, VecdrError)
    assert "\n" not in str(caught.value)
    assert listing(world) == before


@pytest.fixture(scope="module")
def cli_results(template: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case with a command line, run through the console script, a few at once:
    ``{case id: (the finished process, whether the world is unchanged)}``."""
    work = tmp_path_factory.mktemp("cli")
    worlds = {c.id: _world(template, work / c.id, c) for c in CASES if c.cli is not None}
    before = {name: listing(world) for name, world in worlds.items()}

    def one(case: Case) -> subprocess.CompletedProcess[str]:
        assert case.cli is not None
        return run(*case.cli(worlds[case.id]), env=case.env)

    with ThreadPoolExecutor(4) as pool:
        procs = dict(zip(worlds, pool.map(one, [c for c in CASES if c.cli is not None]), strict=True))
    return {name: (procs[name], listing(worlds[name]) == before[name]) for name in worlds}


@pytest.mark.parametrize("case", _params("cli"))
def test_the_console_script_prints_one_line_and_changes_nothing(case: Case, cli_results: dict[str, Any]) -> None:
    proc, unchanged = cli_results[case.id]
    assert proc.returncode != 70, proc.stderr  # "unexpected": never from bad input
    assert_one_line_error(proc)
    assert proc.returncode == (2 if issubclass(case.error, UsageError) else 1), proc.stderr
    assert unchanged
