"""Hostile repositories: a writer with access to the store crafts manifests, commit
records, deletion vectors and segments whose hashes all match (it rewrites them), so
only vecdr's checks of what the objects say stand between it and the reader.

Every reader (restore, verify --read-data, export, show) must answer with one of
vecdr's typed errors, never an unexpected exception, never more than a bounded amount
of memory, never a write outside the repository or the target. The regression tests
craft one object each; the fuzz test mutates a real repository's documents and
segment footers at random.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vecdr
from vecdr.errors import IntegrityError, VecdrError
from vecdr.format import thrift, vectorpages
from vecdr.format.deletions import encode_deletions
from vecdr.format.hashing import sha256_hex
from vecdr.format.records import commit_key
from vecdr.format.segment import _arrow_options, vector_type
from vecdr.repository.commits import commit_seqs

D = 8
ROWS = 300
SRC = Path(vecdr.__file__).resolve().parents[1]  # the vecdr under test, for the reader processes


# -- a real repository ------------------------------------------------------------------


def _source_table(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), D),
        "label": pa.array([f"label {i % 7}" for i in ids]),
    })


def build_repository(root: Path) -> tuple[Path, list[str]]:
    """A repository of a Parquet source with an attribute: a full snapshot, then a diff
    snapshot that changes 10 rows and deletes 20 (so it has a deletion vector)."""
    rng = np.random.default_rng(3)
    ids = np.arange(ROWS, dtype=np.int64)
    vectors = rng.standard_normal((ROWS, D)).astype(np.float32)
    source = root / "source.parquet"
    pq.write_table(_source_table(ids, vectors), source)
    repo = vecdr.init(root / "repo")
    first = vecdr.snapshot(repo, f"parquet:{source}")
    vectors[20:30] += 1
    keep = np.ones(ROWS, bool)
    keep[:20] = False
    pq.write_table(_source_table(ids[keep], vectors[keep]), source)
    second = vecdr.snapshot(repo, f"parquet:{source}", mode="diff")
    assert (second.changed, second.deleted) == (10, 20)
    return root / "repo", [first.snapshot, second.snapshot]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return build_repository(tmp_path_factory.mktemp("pristine"))


class Hostile:
    """A copy of the pristine repository, edited as an attacker with write access would:
    every object it changes is stored under its new hash, and every document that
    names it is rewritten to match."""

    def __init__(self, root: Path, snapshots: list[str]) -> None:
        self.root = root
        self.snapshots = snapshots

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def put(self, kind: str, data: bytes, ext: str) -> dict[str, Any]:
        digest = sha256_hex(data)
        key = f"{kind}/{digest[:2]}/{digest}.{ext}"
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)
        return {"key": key, "sha256": digest, "size": len(data)}

    def seqs(self) -> list[int]:
        return commit_seqs(vecdr.open_repository(self.root).store)

    def record(self, seq: int) -> dict[str, Any]:
        return json.loads(self.read(commit_key(seq)))

    def manifest(self, seq: int) -> dict[str, Any]:
        return json.loads(self.read(self.record(seq)["manifest"]["key"]))

    def write_record(self, seq: int, record: dict[str, Any]) -> None:
        (self.root / commit_key(seq)).write_bytes(json.dumps(record).encode())

    def write_manifest(self, seq: int, doc: dict[str, Any]) -> str:
        """Store the edited manifest (same key, new bytes) and point the record at it."""
        record = self.record(seq)
        data = json.dumps(doc).encode()
        (self.root / record["manifest"]["key"]).write_bytes(data)
        record["manifest"].update(sha256=sha256_hex(data), size=len(data))
        self.write_record(seq, record)
        return str(record["manifest"]["key"])

    def edit_manifest(self, seq: int, edit: Callable[[dict[str, Any]], None]) -> str:
        doc = self.manifest(seq)
        edit(doc)
        return self.write_manifest(seq, doc)

    def replace_segment(self, seq: int, index: int, data: bytes, slot: str = "object") -> str:
        """Put ``data`` in place of segment ``index``'s object (or its ``hashes``) in manifest ``seq``."""
        ref = self.put("segments" if slot == "object" else "artifacts", data,
                       "parquet" if slot == "object" else "hashes.parquet")
        self.edit_manifest(seq, lambda doc: doc["segments"][index][slot].update(ref))
        return str(ref["key"])


@pytest.fixture
def hostile(pristine: tuple[Path, list[str]], tmp_path: Path) -> Hostile:
    import shutil

    shutil.copytree(pristine[0], tmp_path / "repo")
    return Hostile(tmp_path / "repo", pristine[1])


# -- crafting Parquet bytes ---------------------------------------------------------------


def footer(data: bytes) -> tuple[thrift.Struct, int]:
    start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    meta, _ = thrift.decode(data, start)
    return meta, start


def with_footer(body: bytes, meta: thrift.Struct) -> bytes:
    encoded = thrift.encode(meta)
    return body + encoded + len(encoded).to_bytes(4, "little") + b"PAR1"


def declare_rows(data: bytes, rows: int) -> bytes:
    """The same segment with a footer that declares ``rows`` rows (in total and in its row group)."""
    meta, start = footer(data)
    meta[3] = (thrift.I64, rows)
    for group in meta.get_value(4)[1]:
        group[3] = (thrift.I64, rows)
    return with_footer(data[:start], meta)


def zstd_bomb(data: bytes, expands_to: int) -> bytes:
    """The segment with its vector pages of row group 0 replaced by one page whose
    zstd body expands to ``expands_to`` bytes of zeros, with footer sizes to match."""
    meta, start = footer(data)
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    zeros = bytes(1 << 20)
    body = b"".join(compressor.compress(zeros) for _ in range(expands_to >> 20)) + compressor.flush()
    group = meta.get_value(4)[1][0]
    rows = group.get_value(3)
    header = thrift.encode(thrift.Struct({
        1: (thrift.I32, vectorpages.DATA_PAGE_V2),
        2: (thrift.I32, expands_to),
        3: (thrift.I32, len(body)),
        8: (thrift.STRUCT, thrift.Struct({
            1: (thrift.I32, rows * D), 2: (thrift.I32, 0), 3: (thrift.I32, rows),
            4: (thrift.I32, vectorpages.BYTE_STREAM_SPLIT), 5: (thrift.I32, 0), 6: (thrift.I32, 0),
            7: (thrift.BOOL, True),
        })),
    }))
    chunk = group.get_value(1)[1][1].get_value(3)  # the vector column's ColumnMetaData
    chunk[6] = (thrift.I64, len(header) + expands_to)
    chunk[7] = (thrift.I64, len(header) + len(body))
    chunk[9] = (thrift.I64, start)
    chunk.pop(11, None)
    return with_footer(data[:start] + header + body, meta)


def expanding_dictionary(data: bytes, rows: int, value_bytes: int) -> bytes:
    """A segment whose ``label`` column is one ``value_bytes`` string in every row,
    dictionary-encoded: a few kilobytes that decode to ``rows * value_bytes`` bytes.
    Arrow writes it from a dictionary array; its footer gets the Arrow schema of the
    real segment ``data`` (string, not dictionary), so it matches the manifest."""
    labels = pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, np.int32)), pa.array(["x" * value_bytes]))
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(rows * D, np.float32)), type=vector_type(D))
    table = pa.table({"id": pa.array(np.arange(rows), pa.int64()), "vector": vectors, "label": labels})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **_arrow_options(table.schema, table.column_names))
    crafted = sink.getvalue().to_pybytes()
    meta, start = footer(crafted)
    meta[5] = footer(data)[0][5]
    return with_footer(crafted[:start], meta)


def first_segment(hostile: Hostile, seq: int) -> tuple[dict[str, Any], bytes]:
    entry = hostile.manifest(seq)["segments"][0]
    return entry, hostile.read(entry["object"]["key"])


# -- reading in a fresh process, to measure its memory -----------------------------------------

_READER = r"""
import json, resource, sys, traceback
import vecdr
from vecdr.backends.faiss import FaissTarget

def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

repo = vecdr.open_repository(sys.argv[1])
before = kib("VmRSS:")
out = {}
try:
    if sys.argv[2] == "verify":
        report = vecdr.verify(repo, read_data=True)
        out["errors"] = [[p.object, p.problem] for p in report.errors]
    else:
        vecdr.restore(repo, sys.argv[3], sys.argv[4])
        out["restored"] = True
except vecdr.VecdrError as exc:
    out["error"] = [type(exc).__name__, str(exc), getattr(exc, "path", None)]
except BaseException as exc:
    out["unexpected"] = traceback.format_exc()
out["grew_mib"] = (kib("VmHWM:") - before) / 1024
print(json.dumps(out))
"""


def read_in_subprocess(root: Path, *args: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", _READER, str(root), *args], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


#: How much a read of one crafted object may grow the reader's peak memory.
BOUND_MIB = 96

CRAFTED: dict[str, Callable[[bytes], bytes]] = {
    "a footer declaring 3,000,000 rows": lambda data: declare_rows(data, 3_000_000),
    "a zstd bomb in a vector page": lambda data: zstd_bomb(data, 600 << 20),
    "a dictionary expanding to 600 MB": lambda data: expanding_dictionary(data, ROWS, 2 << 20),
}


@pytest.mark.fault("crafted segment: {crafted}", store="local")
@pytest.mark.parametrize("crafted", CRAFTED)
def test_a_crafted_segment_is_refused_before_it_is_decoded(crafted: str, hostile: Hostile, tmp_path: Path) -> None:
    seq = hostile.seqs()[-1]
    entry, data = first_segment(hostile, seq)
    bad = CRAFTED[crafted](data)
    assert len(bad) < 1 << 20
    key = hostile.replace_segment(seq, 0, bad)
    verified = read_in_subprocess(hostile.root, "verify")
    assert "unexpected" not in verified, verified["unexpected"]
    assert key in [obj for obj, _ in verified["errors"]], verified
    assert verified["grew_mib"] < BOUND_MIB, verified
    restored = read_in_subprocess(hostile.root, "restore", f"parquet:{tmp_path / 'out.parquet'}",
                                  hostile.snapshots[-1])
    assert "unexpected" not in restored, restored["unexpected"]
    assert restored["error"][0] == "IntegrityError" and restored["error"][2] == key, restored
    assert "refusing to decode it" in restored["error"][1], restored
    assert restored["grew_mib"] < BOUND_MIB, restored
    assert not (tmp_path / "out.parquet").exists()


@pytest.mark.fault("crafted row-hash sidecar declaring 3,000,000 rows", store="local")
def test_a_crafted_row_hash_sidecar_is_refused_before_it_is_decoded(
    hostile: Hostile, pristine: tuple[Path, list[str]]
) -> None:
    seq = hostile.seqs()[-1]
    entry = hostile.manifest(seq)["segments"][0]
    key = hostile.replace_segment(seq, 0, declare_rows(hostile.read(entry["hashes"]["key"]), 3_000_000), "hashes")
    with pytest.raises(IntegrityError, match="declares 3000000 rows") as caught:
        vecdr.snapshot(hostile.root, f"parquet:{pristine[0].parent / 'source.parquet'}", mode="diff")
    assert caught.value.path == key
    assert key in [p.object for p in vecdr.verify(hostile.root, read_data=True).errors]


# -- crafted manifests and commit records ---------------------------------------------------


def _read_everything(root: Path, out: Path, snapshot: str) -> dict[str, BaseException | None]:
    """Restore (into FAISS and Parquet), export and verify ``snapshot``: what each raised."""
    results: dict[str, BaseException | None] = {}
    calls: dict[str, Callable[[], object]] = {
        "restore faiss": lambda: vecdr.restore(root, f"faiss:{out / 'out.faiss'}", snapshot),
        "restore parquet": lambda: vecdr.restore(root, f"parquet:{out / 'out.parquet'}", snapshot),
        "export npy": lambda: vecdr.export(root, snapshot, out / "out.npy"),
    }
    for name, call in calls.items():
        try:
            call()
            results[name] = None
        except VecdrError as exc:
            results[name] = exc
    return results


def _set_rows(doc: dict[str, Any], rows: int) -> None:
    doc["segments"][0].update(rows=rows, live=rows, deletions=None)


@pytest.mark.fault("manifest declaring 10**15 rows", store="local")
def test_a_manifest_declaring_absurd_row_counts_is_an_integrity_error(hostile: Hostile, tmp_path: Path) -> None:
    seq = hostile.seqs()[-1]
    manifest_key = hostile.edit_manifest(seq, lambda doc: _set_rows(doc, 10**15))
    record = hostile.record(seq)
    doc = hostile.manifest(seq)
    record["rows"] = sum(s["live"] for s in doc["segments"])  # the record agrees, as a careful attacker makes it
    hostile.write_record(seq, record)
    for name, raised in _read_everything(hostile.root, tmp_path, hostile.snapshots[-1]).items():
        assert isinstance(raised, IntegrityError), name
        assert raised.path == manifest_key and "declares 1000000000000000 rows" in str(raised), (name, raised)
    assert [p.object for p in vecdr.verify(hostile.root, read_data=True).errors] == [manifest_key]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # nothing written beside it


@pytest.mark.fault("segment entry pointing to a Parquet file that is not a segment", store="local")
def test_a_segment_entry_pointing_to_another_parquet_file_is_refused(hostile: Hostile, tmp_path: Path) -> None:
    seq = hostile.seqs()[-1]
    entry = hostile.manifest(seq)["segments"][-1]
    sidecar = hostile.read(entry["hashes"]["key"])  # a valid Parquet file of as many rows: the row hashes
    key = hostile.replace_segment(seq, len(hostile.manifest(seq)["segments"]) - 1, sidecar)
    for name, raised in _read_everything(hostile.root, tmp_path, hostile.snapshots[-1]).items():
        assert isinstance(raised, IntegrityError), name
        assert raised.path == key and "are not those of this segment" in str(raised), (name, raised)
    errors = vecdr.verify(hostile.root, read_data=True).errors
    assert [p.object for p in errors] == [key] and "not those of this segment" in errors[0].problem


@pytest.mark.fault("segment listed twice in a manifest", store="local")
def test_a_segment_listed_twice_is_refused(hostile: Hostile, tmp_path: Path) -> None:
    seq = hostile.seqs()[-1]

    def twice(doc: dict[str, Any]) -> None:
        doc["segments"].append(doc["segments"][-1])

    manifest_key = hostile.edit_manifest(seq, twice)
    record = hostile.record(seq)
    record["rows"] = sum(s["live"] for s in hostile.manifest(seq)["segments"])
    hostile.write_record(seq, record)
    for name, raised in _read_everything(hostile.root, tmp_path, hostile.snapshots[-1]).items():
        assert isinstance(raised, IntegrityError), name
        assert raised.path == manifest_key and "listed twice" in str(raised), (name, raised)
    assert [p.object for p in vecdr.verify(hostile.root, read_data=True).errors] == [manifest_key]


@pytest.mark.fault("snapshot committed by two commit records", store="local")
def test_two_commit_records_for_one_snapshot_are_reported(hostile: Hostile) -> None:
    seq = hostile.seqs()[-1]
    record = hostile.record(seq)
    record["seq"] = seq + 1
    hostile.write_record(seq + 1, record)
    report = vecdr.verify(hostile.root)
    assert [p.object for p in report.errors] == [commit_key(seq + 1)]
    assert hostile.snapshots[-1] in report.errors[0].problem and commit_key(seq) in report.errors[0].problem


# -- the structure-aware fuzz test -----------------------------------------------------------------

VALUES = st.sampled_from([
    0, 1, -1, 2, 7, 299, 301, 3_000_000, 10**15, 2**31, 2**63, 2**64, -(2**63), 1.5, float("inf"), True,
    None, "", "x", "int64", "string", "../../outside", "segments/00/" + "0" * 64 + ".parquet", [], {}, [1], {"a": 1},
])


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every value of a JSON document (containers too, so they can be replaced whole)."""
    found = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            found += _leaves(child, (*path, key))
    elif isinstance(node, list):
        for i, child in enumerate(node):
            found += _leaves(child, (*path, i))
    return found


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    if value is _DROP and isinstance(doc, dict):
        del doc[path[-1]]
    else:
        doc[path[-1]] = None if value is _DROP else value


_DROP = object()


def _thrift_ints(node: thrift.Struct, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of the integer fields of a decoded footer."""
    found = []
    for field, (typ, value) in node.items():
        if typ in (thrift.I16, thrift.I32, thrift.I64):
            found.append((*path, field))
        elif typ == thrift.STRUCT:
            found += _thrift_ints(value, (*path, field))
        elif typ == thrift.LIST and value[0] == thrift.STRUCT:
            for i, item in enumerate(value[1]):
                found += _thrift_ints(item, (*path, field, i))
    return found


def _footer_mutation(draw: Callable[[st.SearchStrategy[Any]], Any], hostile: Hostile, doc: dict[str, Any]) -> None:
    """Re-store one of the manifest's segments (or sidecars) with a field of its footer changed."""
    index = draw(st.integers(0, len(doc["segments"]) - 1))
    slot = draw(st.sampled_from(["object", "object", "hashes"]))
    data = hostile.read(doc["segments"][index][slot]["key"])
    meta, start = footer(data)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_thrift_ints(meta)))
        node: Any = meta
        for part in path[:-1]:
            node = node[part][1] if isinstance(node, thrift.Struct) else node[part]
            if isinstance(node, tuple):
                node = node[1]
        old = node[path[-1]][1]
        new = draw(st.sampled_from([0, 1, -1, old + 1, old - 1, old * 2, 2**31 - 1, 3_000_000, 10**12]))
        node[path[-1]] = (node[path[-1]][0], new)
    crafted = with_footer(data[:start], meta)
    kind, ext = ("segments", "parquet") if slot == "object" else ("artifacts", "hashes.parquet")
    doc["segments"][index][slot] = hostile.put(kind, crafted, ext)
    if draw(st.booleans()):  # make the manifest agree with what the footer declares
        rows = meta.get_value(3)
        doc["segments"][index].update(rows=rows, live=rows, deletions=None)


def _page_mutation(draw: Callable[[st.SearchStrategy[Any]], Any], hostile: Hostile, doc: dict[str, Any]) -> None:
    """Re-store one of the manifest's segments with bytes of its pages (headers or data) changed."""
    index = draw(st.integers(0, len(doc["segments"]) - 1))
    data = bytearray(hostile.read(doc["segments"][index]["object"]["key"]))
    _, start = footer(bytes(data))
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(4, start - 1))] = draw(st.sampled_from([0, 0xFF, 0x15, 0x7F, 0x80]))
    doc["segments"][index]["object"] = hostile.put("segments", bytes(data), "parquet")


def _deletion_mutation(draw: Callable[[st.SearchStrategy[Any]], Any], hostile: Hostile, doc: dict[str, Any]) -> None:
    """Give a segment a new deletion vector: of another length, all rows, or mutated bytes."""
    index = draw(st.integers(0, len(doc["segments"]) - 1))
    entry = doc["segments"][index]
    rows = entry["rows"] + draw(st.sampled_from([0, 0, 1, -1, 1000]))
    mask = np.asarray(draw(st.lists(st.booleans(), min_size=max(rows, 0), max_size=max(rows, 0))), bool)
    data = encode_deletions(mask)
    if draw(st.booleans()):
        raw = bytearray(data)
        raw[draw(st.integers(0, len(raw) - 1))] ^= 1 << draw(st.integers(0, 7))
        data = bytes(raw)
    ref = hostile.put("artifacts", data, "del")
    offset, length = draw(st.sampled_from([(0, len(data)), (1, len(data)), (0, len(data) + 5), (0, 1)]))
    entry["deletions"] = {**ref, "offset": offset, "length": length}
    entry["live"] = int(len(mask) - mask.sum()) if draw(st.booleans()) else draw(VALUES)


def _manifest_mutation(draw: Callable[[st.SearchStrategy[Any]], Any], doc: dict[str, Any]) -> None:
    """Replace or drop a value anywhere, or duplicate, remove or swap whole segment entries."""
    segments = doc.get("segments")
    entries = isinstance(segments, list) and segments and all(isinstance(s, dict) for s in segments)
    actions = ["value", "value", "drop"] + (["duplicate", "swap", "remove"] if entries else [])
    action = draw(st.sampled_from(actions))
    if action == "duplicate":
        segments.append(dict(draw(st.sampled_from(segments))))
    elif action == "swap" and len(segments) > 1:
        a, b = draw(st.permutations(range(len(segments))))[:2]
        slot = draw(st.sampled_from(["object", "hashes", "deletions"]))
        segments[a][slot], segments[b][slot] = segments[b].get(slot), segments[a].get(slot)
    elif action == "remove" and len(segments) > 1:
        segments.pop(draw(st.integers(0, len(segments) - 1)))
    elif action in ("value", "drop"):
        path = draw(st.sampled_from(_leaves(doc)))
        _set(doc, path, _DROP if action == "drop" else draw(VALUES))


def mutate_repository(draw: Callable[[st.SearchStrategy[Any]], Any], hostile: Hostile) -> None:
    """Apply a few drawn mutations to the repository, then make every hash agree again."""
    plan = draw(st.lists(st.sampled_from(["manifest", "record", "deletions", "footer", "pages", "twice"]), min_size=1,
                         max_size=3))
    seq = hostile.seqs()[draw(st.integers(0, 1))]
    doc = hostile.manifest(seq)
    record = hostile.record(seq)
    for what in plan:
        segments = doc.get("segments")
        if what == "manifest":
            _manifest_mutation(draw, doc)
        elif what == "deletions" and isinstance(segments, list) and segments and _entries_ok(segments):
            _deletion_mutation(draw, hostile, doc)
        elif what == "footer" and isinstance(segments, list) and segments and _entries_ok(segments):
            _footer_mutation(draw, hostile, doc)
        elif what == "pages" and isinstance(segments, list) and segments and _entries_ok(segments):
            _page_mutation(draw, hostile, doc)
        elif what == "record":
            _set(record, draw(st.sampled_from(_leaves(record))), draw(VALUES))
        elif what == "twice":
            hostile.write_record(max(hostile.seqs()) + 1, dict(record, seq=max(hostile.seqs()) + 1))
    data = json.dumps(doc).encode()
    (hostile.root / hostile.record(seq)["manifest"]["key"]).write_bytes(data)
    if isinstance(record.get("manifest"), dict):
        record["manifest"].update(sha256=sha256_hex(data), size=len(data))
    if draw(st.booleans()):  # the record agrees with the manifest, as a careful attacker makes it
        try:
            record["rows"] = sum(s["live"] for s in doc["segments"])
        except (TypeError, KeyError):
            pass
    hostile.write_record(seq, record)


def _entries_ok(segments: list[Any]) -> bool:
    """Whether every entry still has the shape the object mutations edit."""
    try:
        return all(isinstance(s["rows"], int) and 0 <= s["rows"] <= 100_000 and isinstance(s["object"]["key"], str)
                   and isinstance(s["hashes"]["key"], str) for s in segments)
    except (TypeError, KeyError):
        return False


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _run_cli(argv: list[str]) -> int:
    from vecdr.cli.main import main

    return main(argv)


def check_every_reader(hostile: Hostile, sandbox: Path) -> None:
    """Every reading command answers 0 or a typed error, writes only inside its target, and
    keeps the process's memory within bounds."""
    out = sandbox / "out"
    out.mkdir()
    outside = _files(sandbox) - _files(out)
    snapshot = hostile.snapshots[1]
    commands = [
        ["show", str(hostile.root), snapshot, "--json"],
        ["verify", str(hostile.root), "--read-data", "--json"],
        ["restore", str(hostile.root), snapshot, f"faiss:{out / 'r.faiss'}"],
        ["restore", str(hostile.root), hostile.snapshots[0], f"parquet:{out / 'r.parquet'}"],
        ["export", str(hostile.root), snapshot, str(out / "e.npy")],
    ]
    for argv in commands:
        code = _run_cli(argv)
        assert code in (0, 1), (argv, code)
    assert _files(sandbox) - _files(out) <= outside, "a reader wrote outside its target"
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - START_RSS
    assert grown < 1 << 30, f"peak memory grew by {grown >> 20} MiB"


START_RSS = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _fuzz(pristine: tuple[Path, list[str]], data: st.DataObject) -> None:
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        sandbox = Path(folder)
        shutil.copytree(pristine[0], sandbox / "repo")
        hostile = Hostile(sandbox / "repo", pristine[1])
        try:
            mutate_repository(data.draw, hostile)
        except OSError:  # a mutation named an object that is not there to read
            return
        check_every_reader(hostile, sandbox)


@pytest.fixture(scope="module")
def quiet_environment() -> Any:
    with pytest.MonkeyPatch.context() as patch:
        for name in ("VECDR_DEBUG", "VECDR_REPOSITORY", "VECDR_KEY", "VECDR_PASSWORD"):
            patch.delenv(name, raising=False)
        yield


FUZZ = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                   HealthCheck.data_too_large])


@pytest.mark.fault("structure-aware fuzzing of manifests, commit records, deletion vectors and footers",
                   store="local")
@settings(max_examples=100, **FUZZ)
@given(data=st.data())
def test_mutated_repositories_give_only_typed_errors(
    data: st.DataObject, pristine: tuple[Path, list[str]], quiet_environment: Any
) -> None:
    _fuzz(pristine, data)


@pytest.mark.slow
@settings(max_examples=1000, **FUZZ)
@given(data=st.data())
def test_mutated_repositories_give_only_typed_errors_long(
    data: st.DataObject, pristine: tuple[Path, list[str]], quiet_environment: Any
) -> None:
    _fuzz(pristine, data)
