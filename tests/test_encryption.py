"""Client-side encryption: round trips on encrypted local and memory repositories,
keys (wrong, missing, from the environment), tampered and swapped objects, nothing
stored in plaintext, secrets nowhere, and every command through the console script."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pytest

import vecdr
from vecdr.backends.faiss import FaissTarget
from vecdr.engines import open_snapshot
from vecdr.errors import (
    DecryptionError,
    IntegrityError,
    KeyRequiredError,
    UnsupportedFormatError,
    UsageError,
    WrongKeyError,
)
from vecdr.format.records import commit_key
from vecdr.store import keys, open_store
from vecdr.store.encrypted import MAGIC, EncryptedStore
from vecdr.testing.backends import assert_same_rows, faiss_rows
from vecdr.testing.cli import assert_one_line_error, run
from vecdr.testing.faults import CorruptOnceStore

D = 16
KEY = "5e" * 32
PASSPHRASE = "correct horse battery staple"
COLLECTION = "collection-name-that-must-not-leak"


@pytest.fixture(autouse=True)
def cheap_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap key derivation in this process (the command line keeps the real cost)."""
    monkeypatch.setattr(keys, "SCRYPT", {"n": 1 << 10, "r": 8, "p": 1})
    for name in (keys.KEY_ENV, keys.PASSWORD_ENV):
        monkeypatch.delenv(name, raising=False)


def rows(n: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    vectors = np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)
    return np.arange(start, start + n, dtype=np.int64), vectors


def index_of(ids: np.ndarray, vectors: np.ndarray) -> faiss.Index:
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(D))
    index.add_with_ids(vectors, ids)
    return index


def stored(url: str) -> Iterator[tuple[str, bytes]]:
    """Every object as the store holds it (ciphertext), bypassing the repository."""
    store = open_store(url)
    for key in store.list():
        yield key, store.read(key)


@pytest.fixture(params=["local", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path, memory_url: str) -> str:
    return str(tmp_path / "repo") if request.param == "local" else memory_url


SECRETS = {"key": {"key": KEY}, "passphrase": {"password": PASSPHRASE}}


@pytest.mark.parametrize("secret", SECRETS)
def test_round_trip_on_an_encrypted_repository(secret: str, url: str) -> None:
    repo = vecdr.init(url, encrypt=True, **SECRETS[secret])
    ids, vectors = rows(3000, seed=1)
    first = vecdr.snapshot(repo, index_of(ids, vectors), collection=COLLECTION, with_index=True)

    changed = vectors.copy()
    changed[:50] += 1.0
    keep = np.r_[0:2900]
    ids2 = np.concatenate([ids[keep], np.arange(10**6, 10**6 + 20)])
    vectors2 = np.vstack([changed[keep], rows(20, seed=2)[1]])
    second = vecdr.snapshot(repo, index_of(ids2, vectors2), collection=COLLECTION)
    assert (second.mode, second.changed, second.deleted, second.added) == ("diff", 50, 100, 20)

    again = vecdr.open_repository(url, **SECRETS[secret])
    assert again.store.local_path(open_snapshot(again, first.snapshot).segments[0].object.key) is None
    assert_same_rows(faiss_rows(vecdr.restore_index(again, first.snapshot)), (ids, vectors))
    assert_same_rows(faiss_rows(vecdr.restore_index(again, second.snapshot)), (ids2, vectors2))
    for read_data in (False, True):
        report = vecdr.verify(again, read_data=read_data)
        assert report.ok and not report.unreferenced, report.errors
    # Sizes are plaintext sizes: what the manifest records is what the store reports.
    manifest = open_snapshot(again, second.snapshot)
    for ref in manifest.referenced():
        assert again.store.size(ref.key) == ref.size == len(again.get(ref))


def test_nothing_stored_is_plaintext(url: str) -> None:
    ids, vectors = rows(2000, seed=3)
    repo = vecdr.init(url, encrypt=True, key=KEY)
    vecdr.snapshot(repo, index_of(ids, vectors), collection=COLLECTION, tags=["tag-that-must-not-leak"],
                   with_index=True)
    needles = [COLLECTION.encode(), b"tag-that-must-not-leak", vectors[1234].tobytes(), vectors[7, :4].tobytes(),
               b"PAR1", b'"segments"', KEY.encode(), bytes.fromhex(KEY)]
    objects = dict(stored(url))
    assert len(objects) > 5
    for key, data in objects.items():
        for needle in needles:
            assert needle not in data, (key, needle)
        if key != "config.json":
            assert data.startswith(MAGIC), key


def test_a_wrong_or_missing_key_is_a_clear_error(url: str) -> None:
    vecdr.init(url, encrypt=True, password=PASSPHRASE)
    with pytest.raises(KeyRequiredError, match="is encrypted: set VECDR_PASSWORD"):
        vecdr.open_repository(url)
    with pytest.raises(WrongKeyError, match="passphrase from password= does not open"):
        vecdr.open_repository(url, password="not it")
    with pytest.raises(WrongKeyError, match="key from key= does not open"):
        vecdr.open_repository(url, key=KEY)
    with pytest.raises(UsageError, match="64 hex digits"):
        vecdr.open_repository(url, key="0123")


def test_keys_come_from_the_environment(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keys.KEY_ENV, KEY)
    repo = vecdr.init(url, encrypt=True)
    vecdr.snapshot(repo, index_of(*rows(100, seed=4)))
    assert len(vecdr.snapshots(url)) == 1
    monkeypatch.delenv(keys.KEY_ENV)
    monkeypatch.setenv(keys.PASSWORD_ENV, PASSPHRASE)
    with pytest.raises(WrongKeyError, match=f"from {keys.PASSWORD_ENV}"):
        vecdr.snapshots(url)


def test_a_key_for_a_plain_repository_is_refused(url: str) -> None:
    with pytest.raises(UsageError, match="not to be encrypted"):
        vecdr.init(url, key=KEY)
    vecdr.init(url)
    with pytest.raises(UsageError, match="is not encrypted"):
        vecdr.open_repository(url, password=PASSPHRASE)


def _config(url: str) -> dict[str, Any]:
    return json.loads(open_store(url).read("config.json"))


def _set_config(url: str, doc: dict[str, Any]) -> None:
    open_store(url).write("config.json", json.dumps(doc).encode())


def test_an_altered_config_is_refused(url: str) -> None:
    vecdr.init(url, encrypt=True, key=KEY)
    original = _config(url)
    # Dropping the encryption settings would make a writer store plaintext: with a key
    # given, that is refused.
    _set_config(url, {k: v for k, v in original.items() if k not in ("encryption", "requires")})
    with pytest.raises(UsageError, match="is not encrypted"):
        vecdr.open_repository(url, key=KEY)
    _set_config(url, {**original, "requires": ["encryption", "time-travel"]})
    with pytest.raises(UnsupportedFormatError, match="time-travel"):
        vecdr.open_repository(url, key=KEY)
    _set_config(url, {k: v for k, v in original.items() if k != "requires"})
    with pytest.raises(IntegrityError, match="disagree"):
        vecdr.open_repository(url, key=KEY)
    for field, value in [("n", 1 << 30), ("n", 1000), ("r", 0), ("salt", "zz"), ("name", "md5")]:
        doc = json.loads(json.dumps(original))
        doc["encryption"]["kdf"][field] = value
        _set_config(url, doc)
        with pytest.raises(IntegrityError, match="malformed encryption settings"):
            vecdr.open_repository(url, key=KEY)
    doc = json.loads(json.dumps(original))
    doc["encryption"]["key_check"] = "0" * 64
    _set_config(url, doc)
    with pytest.raises(WrongKeyError):
        vecdr.open_repository(url, key=KEY)


# -- tampering -------------------------------------------------------------------------


@pytest.fixture
def two_snapshots(tmp_path: Path) -> tuple[vecdr.Repository, Path, list[Any]]:
    url = tmp_path / "repo"
    repo = vecdr.init(url, encrypt=True, key=KEY)
    ids, vectors = rows(1000, seed=5)
    first = vecdr.snapshot(repo, index_of(ids, vectors), with_index=True)
    more, more_vectors = rows(500, seed=6, start=5000)
    second = vecdr.snapshot(repo, index_of(np.concatenate([ids, more]), np.vstack([vectors, more_vectors])))
    return repo, url, [first, second]


def _keys(repo: vecdr.Repository, result: Any) -> dict[str, str]:
    manifest = open_snapshot(repo, result.snapshot)
    return {
        "segment": manifest.segments[-1].object.key,
        "row hashes": manifest.segments[-1].hashes.key,
        "manifest": f"manifests/{result.snapshot}.json",
        "commit record": commit_key(result.seq),
    }


@pytest.mark.parametrize("kind", ["segment", "row hashes", "manifest", "commit record"])
def test_a_tampered_byte_is_an_integrity_error_naming_the_object(
    kind: str, two_snapshots: tuple[vecdr.Repository, Path, list[Any]]
) -> None:
    repo, root, (_, second) = two_snapshots
    key = _keys(repo, second)[kind]
    path = root / key
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError) as caught:
        if kind == "row hashes":  # read by the next diff snapshot, not by restores
            vecdr.snapshot(repo, index_of(*rows(10, seed=9)), mode="diff")
        else:
            vecdr.restore(repo, FaissTarget(None), second.snapshot)
    assert key in str(caught.value)
    assert [p.object for p in vecdr.verify(repo, read_data=True).errors] == [key]


def test_swapped_objects_do_not_decrypt(two_snapshots: tuple[vecdr.Repository, Path, list[Any]]) -> None:
    repo, root, (first, second) = two_snapshots
    a, b = open_snapshot(repo, first.snapshot).segments[0].object.key, _keys(repo, second)["segment"]
    assert a != b
    data_a, data_b = (root / a).read_bytes(), (root / b).read_bytes()
    (root / a).write_bytes(data_b)
    (root / b).write_bytes(data_a)
    with pytest.raises(DecryptionError) as caught:
        vecdr.restore(repo, FaissTarget(None), second.snapshot)  # reads both segments
    assert caught.value.path in (a, b)
    assert sorted(p.object for p in vecdr.verify(repo, read_data=True).errors) == sorted([a, b])


def test_an_object_from_another_repository_with_the_same_key_does_not_decrypt(
    two_snapshots: tuple[vecdr.Repository, Path, list[Any]], tmp_path: Path
) -> None:
    repo, root, (first, second) = two_snapshots
    other = vecdr.init(tmp_path / "other", encrypt=True, key=KEY)
    ids, vectors = rows(1000, seed=5)  # the same rows: the same segment key in both repositories
    vecdr.snapshot(other, index_of(ids, vectors))
    key = open_snapshot(repo, first.snapshot).segments[0].object.key
    (root / key).write_bytes((tmp_path / "other" / key).read_bytes())
    with pytest.raises(DecryptionError, match="does not decrypt"):
        vecdr.restore(repo, FaissTarget(None), second.snapshot)


# -- the sealed object format ------------------------------------------------------------


DATA_KEY = bytes(range(32))


@pytest.fixture
def small_chunks(memory_url: str) -> EncryptedStore:
    return EncryptedStore(open_store(memory_url), DATA_KEY, "repo-id", chunk=1024)


@pytest.mark.parametrize("size", [0, 1, 1023, 1024, 1025, 2048, 5000])
def test_objects_of_any_size_round_trip_in_chunks(size: int, small_chunks: EncryptedStore) -> None:
    data = os.urandom(size)
    small_chunks.write("artifacts/x", data)
    assert small_chunks.read("artifacts/x") == data
    assert small_chunks.size("artifacts/x") == size
    assert [i.size for i in small_chunks.list_info("artifacts")] == [size]
    assert small_chunks.inner.size("artifacts/x") == len(MAGIC) + size + 28 * max(1, -(-size // 1024))


def test_truncated_reordered_or_moved_chunks_do_not_decrypt(small_chunks: EncryptedStore) -> None:
    small_chunks.write("a", os.urandom(3000))
    sealed = small_chunks.inner.read("a")
    whole = 1024 + 28
    body = sealed[len(MAGIC):]
    damaged = {
        "truncated by a chunk": sealed[: len(MAGIC) + 2 * whole],
        "reordered": MAGIC + body[whole : 2 * whole] + body[:whole] + body[2 * whole :],
        "cut mid-chunk": sealed[:-5],
        "no header": body,
    }
    for data in damaged.values():
        small_chunks.inner.write("a", data)
        with pytest.raises(DecryptionError):
            small_chunks.read("a")
        small_chunks.inner.write("a", sealed)
    small_chunks.inner.write("b", sealed)  # moved to another name
    with pytest.raises(DecryptionError, match="b: does not decrypt"):
        small_chunks.read("b")
    with pytest.raises(DecryptionError):
        EncryptedStore(small_chunks.inner, DATA_KEY, "other-repo", 1024).read("a")


def test_damage_on_the_way_is_read_again(small_chunks: EncryptedStore, caplog: pytest.LogCaptureFixture) -> None:
    small_chunks.write("a", b"payload" * 500)
    flaky = EncryptedStore(CorruptOnceStore(small_chunks.inner, lambda key: True), DATA_KEY,
                           "repo-id", 1024)
    with caplog.at_level(logging.WARNING, logger="vecdr.store"):
        assert flaky.read("a") == b"payload" * 500
    assert "a second read was intact" in caplog.text


# -- the command line -----------------------------------------------------------------------


def _files(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def test_every_command_works_on_an_encrypted_repository(tmp_path: Path) -> None:
    repo, env = str(tmp_path / "repo"), {keys.KEY_ENV: KEY}
    ids, vectors = rows(2000, seed=7)
    faiss.write_index(index_of(ids, vectors), str(tmp_path / "live.faiss"))
    source = f"faiss:{tmp_path / 'live.faiss'}"
    outputs: list[str] = []

    def ok(*args: str) -> dict[str, Any]:
        proc = run(*args, "--json", env=env)
        outputs.extend([proc.stdout, proc.stderr])
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert ok("init", "--encrypt", repo)["encrypted"] is True
    first = ok("snapshot", repo, source, "--collection", COLLECTION, "--with-index", "--tag", "base")
    faiss.write_index(index_of(ids[:1900], vectors[:1900]), str(tmp_path / "live.faiss"))
    second = ok("snapshot", repo, source, "--collection", COLLECTION)
    assert [s["id"] for s in ok("snapshots", repo)["snapshots"]] == [first["id"], second["id"]]
    assert ok("show", repo, "base")["rows"] == 2000
    ok("restore", repo, "base", f"faiss:{tmp_path / 'restored.faiss'}")
    assert_same_rows(faiss_rows(faiss.read_index(str(tmp_path / "restored.faiss"))), (ids, vectors))
    assert ok("verify", repo, "--read-data")["ok"] is True
    ok("export", repo, "latest", str(tmp_path / "out.parquet"))
    assert ok("compact", repo)["rows"] == 1900
    ok("forget", repo, "--keep-last", "1")
    ok("prune", repo, "--grace", "0h")
    ok("unlock", repo)
    assert ok("verify", repo, "--read-data")["ok"] is True

    assert KEY not in "".join(outputs)
    assert COLLECTION.encode() not in _files(Path(repo)) and KEY.encode() not in _files(Path(repo))

    assert_one_line_error(run("snapshots", repo), "is encrypted: set VECDR_PASSWORD")
    wrong = run("snapshots", repo, env={keys.KEY_ENV: "ab" * 32})
    assert_one_line_error(wrong, "does not open the encrypted repository")
    assert "ab" * 32 not in wrong.stderr
    assert_one_line_error(run("snapshots", repo, env={keys.KEY_ENV: "short"}), "64 hex digits")


def test_a_passphrase_from_the_environment_appears_nowhere(tmp_path: Path) -> None:
    """The real scrypt cost, through the console script; with VECDR_DEBUG, logs included."""
    repo, env = str(tmp_path / "repo"), {keys.PASSWORD_ENV: PASSPHRASE, "VECDR_DEBUG": "1"}
    faiss.write_index(index_of(*rows(500, seed=8)), str(tmp_path / "live.faiss"))
    procs = [run("init", "--encrypt", repo, "--json", env=env),
             run("snapshot", repo, f"faiss:{tmp_path / 'live.faiss'}", "--json", env=env),
             run("verify", repo, "--read-data", env=env)]
    assert [p.returncode for p in procs] == [0, 0, 0], [p.stderr for p in procs]
    config = json.loads((tmp_path / "repo" / "config.json").read_text())
    assert config["encryption"]["kdf"] == {**config["encryption"]["kdf"], "name": "scrypt", "n": 1 << 17}
    text = "".join(p.stdout + p.stderr for p in procs)
    assert PASSPHRASE not in text and PASSPHRASE.encode() not in _files(tmp_path / "repo")
    wrong = run("snapshots", repo, env={keys.PASSWORD_ENV: "not the passphrase"})
    assert_one_line_error(wrong, "passphrase from VECDR_PASSWORD does not open")
