"""Fuzzing every reader of repository bytes: random bytes, and valid bytes mutated (bits
flipped, bytes cut, inserted or repeated; JSON values replaced), must either decode or
raise one of vecdr's typed errors, never anything else, and never hang."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vecdr.engines.segments import dead_mask
from vecdr.errors import IntegrityError, VecdrError
from vecdr.format import thrift
from vecdr.format.deletions import decode_deletion_slice, encode_deletion_file
from vecdr.format.hashing import row_hashes, sha256_hex
from vecdr.format.layout import object_key
from vecdr.format.manifest import DeletionRef, Manifest, SegmentEntry
from vecdr.format.objects import ObjectRef
from vecdr.format.quality import QualitySample, decode_quality, encode_quality
from vecdr.format.records import CommitRecord, Config
from vecdr.format.rowhashes import decode_row_hashes, encode_row_hashes
from vecdr.format.segment import decode_segment, encode_segment, segment_schema, vectors_to_arrow
from vecdr.store import keys

fuzz = settings(max_examples=300, deadline=timedelta(seconds=10),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def ref(kind: str, ext: str, data: bytes = b"x") -> ObjectRef:
    digest = sha256_hex(data)
    return ObjectRef(object_key(kind, digest, ext), digest, len(data))


DELETIONS, RANGES = encode_deletion_file([np.arange(40) % 3 == 0, np.zeros(25, bool)])
SEGMENT_TABLE = pa.table({
    "id": pa.array(np.arange(40), pa.int64()),
    "vector": vectors_to_arrow(np.random.default_rng(0).standard_normal((40, 6)).astype(np.float32)),
    "label": pa.array([f"row {i}" for i in range(40)]),
}).cast(segment_schema(6, "int64", pa.schema([pa.field("label", pa.string())])))
MANIFEST = Manifest(
    snapshot="a" * 32, collection="docs", created_at="2026-01-01T00:00:00Z", dimension=6, id_type="int64",
    schema=SEGMENT_TABLE.schema,
    segments=(SegmentEntry(ref("segments", "parquet"), 40, 26, ref("artifacts", "hashes.parquet"),
                           DeletionRef(ref("artifacts", "del", DELETIONS), *RANGES[0])),),
    index={"engine": "faiss", "factory": "HNSW32"}, artifacts={"native_index": ref("artifacts", "faiss")},
    parent="b" * 32, tags=("nightly",), source={"uri": "faiss:x"}, stats={"rows": 26},
)
RECORD = CommitRecord(3, "a" * 32, "docs", ObjectRef("manifests/" + "a" * 32 + ".json", "c" * 64, 10),
                      "2026-01-01T00:00:00Z", "b" * 32, ("t",), 26)
settings_, _ = keys.new_settings(keys.Secret(key=bytes(32)), "f" * 32)
CONFIGS = [Config("f" * 32, "2026-01-01T00:00:00Z", capabilities={"atomic_create": True}),
           Config("f" * 32, "2026-01-01T00:00:00Z", encryption=settings_)]
SEGMENTS = [bytes(encode_segment(SEGMENT_TABLE)), bytes(encode_segment(SEGMENT_TABLE.slice(0, 1)))]
ROW_HASHES = encode_row_hashes(SEGMENT_TABLE.column("id").combine_chunks(), row_hashes(np.zeros((40, 6), np.float32)))


@st.composite
def mutated(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """One of ``samples`` with a few random edits."""
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        edit = draw(st.sampled_from(["flip", "set", "cut", "insert", "repeat", "truncate"]))
        if edit == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif edit == "set":
            data[at] = draw(st.sampled_from([0, 0xFF, 0x7F, 0x80, ord("9"), ord('"')]))
        elif edit == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif edit == "repeat":
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
        else:
            del data[at:]
    return bytes(data)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
    | st.sampled_from(["../../etc/passwd", "/abs", "segments/ab/" + "0" * 64 + ".parquet", "", "\udcff"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def edited_json(draw: st.DrawFn, samples: list[bytes]) -> bytes:
    """One of the JSON ``samples`` with a value somewhere in it replaced, or a key dropped."""
    doc = json.loads(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(1, 3))):
        node: Any = doc
        while True:
            keys_ = list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []
            if not keys_:
                break
            key = draw(st.sampled_from(keys_))
            child = node[key]
            if isinstance(child, dict | list) and child and draw(st.booleans()):
                node = child
                continue
            if isinstance(node, dict) and draw(st.integers(0, 4)) == 0:
                del node[key]
            else:
                node[key] = draw(JSON)
            break
    return json.dumps(doc).encode("utf-8", "surrogatepass")


def only_typed(read: Callable[[bytes], Any], data: bytes, allowed: tuple[type[BaseException], ...] = (VecdrError,)
               ) -> None:
    try:
        read(data)
    except allowed:
        pass


DOCUMENTS: dict[str, tuple[Callable[[bytes], Any], list[bytes]]] = {
    "manifest": (lambda data: Manifest.from_bytes(data, "manifests/m.json"), [MANIFEST.to_bytes()]),
    "commit record": (lambda data: CommitRecord.from_bytes(data, "commits/1.json"), [RECORD.to_bytes()]),
    "config": (lambda data: Config.from_bytes(data, "config.json"), [c.to_bytes() for c in CONFIGS]),
}


def _open_config(data: bytes) -> None:
    """The whole of opening a config, key check included."""
    config = Config.from_bytes(data, "config.json")
    if config.encryption is not None:
        keys.unlock(config.encryption, config.id, keys.Secret(key=bytes(32)), "repo")


@pytest.mark.parametrize("name", DOCUMENTS)
def test_valid_documents_decode(name: str) -> None:
    read, samples = DOCUMENTS[name]
    for sample in samples:
        read(sample)


@pytest.mark.parametrize("name", DOCUMENTS)
@fuzz
@given(data=st.data())
def test_documents_from_random_or_mutated_bytes(name: str, data: st.DataObject) -> None:
    read, samples = DOCUMENTS[name]
    strategy = st.binary(max_size=2048) | mutated(samples) | edited_json(samples)
    only_typed(read, data.draw(strategy))


@fuzz
@given(data=st.binary(max_size=2048) | mutated([c.to_bytes() for c in CONFIGS]) | edited_json(
    [c.to_bytes() for c in CONFIGS]))
def test_opening_a_config_with_a_key_from_mutated_bytes(data: bytes) -> None:
    only_typed(_open_config, data)


@fuzz
@given(data=st.binary(max_size=4096) | mutated(SEGMENTS))
def test_segments_from_random_or_mutated_bytes(data: bytes) -> None:
    only_typed(lambda d: decode_segment(d, "segments/x.parquet"), data, (IntegrityError,))


@fuzz
@given(data=st.binary(max_size=4096) | mutated(SEGMENTS[:1]))
def test_checked_segments_from_random_or_mutated_bytes(data: bytes) -> None:
    """The reading path of restore and verify: footer checked against the manifest first."""
    only_typed(lambda d: decode_segment(d, "segments/x.parquet", rows=40, schema=SEGMENT_TABLE.schema), data,
               (IntegrityError,))


@fuzz
@given(data=st.binary(max_size=4096) | mutated([ROW_HASHES]))
def test_checked_row_hashes_from_random_or_mutated_bytes(data: bytes) -> None:
    only_typed(lambda d: decode_row_hashes(d, "artifacts/x.hashes.parquet", 40), data, (IntegrityError,))


@fuzz
@given(data=st.binary(max_size=4096) | mutated([ROW_HASHES]))
def test_row_hashes_from_random_or_mutated_bytes(data: bytes) -> None:
    only_typed(lambda d: decode_row_hashes(d, "artifacts/x.hashes.parquet"), data, (IntegrityError,))


class _Deletions:
    """A repository that serves the fuzzed deletion file (all ``dead_mask`` reads of it)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def get_shared(self, ref: ObjectRef) -> bytes:
        return self.data


@fuzz
@given(data=st.binary(max_size=1024) | mutated([DELETIONS]), which=st.integers(0, 1),
       offset=st.integers(-4, 64), length=st.integers(-4, 200))
def test_deletion_vectors_from_random_or_mutated_bytes(data: bytes, which: int, offset: int, length: int) -> None:
    rows = (40, 25)[which]
    # The codec's own contract: ValueError for anything malformed ...
    only_typed(lambda d: decode_deletion_slice(d, *RANGES[which], rows), data, (ValueError,))
    only_typed(lambda d: decode_deletion_slice(d, offset, length, rows), data, (ValueError,))
    # ... which reading a snapshot's deletion vector turns into an IntegrityError naming the file.
    entry = SegmentEntry(ref("segments", "parquet"), rows, rows, ref("artifacts", "hashes.parquet"),
                         DeletionRef(ref("artifacts", "del"), *RANGES[which]))
    try:
        dead_mask(_Deletions(data), entry)  # type: ignore[arg-type]
    except IntegrityError as exc:
        assert exc.path == entry.deletions.key  # type: ignore[union-attr]


QUALITY = encode_quality(QualitySample(np.random.default_rng(1).standard_normal((32, 6)).astype(np.float32),
                                       [[1, 2, 3]] * 32, 3, "L2"), pa.int64())


def test_a_quality_sample_round_trips() -> None:
    sample = decode_quality(QUALITY, "artifacts/q.quality.parquet")
    assert sample.queries.shape == (32, 6) and sample.k == 3 and sample.answers == [[1, 2, 3]] * 32


@pytest.mark.fault("crafted quality sample declaring 3,000,000 queries")
def test_a_quality_sample_declaring_millions_of_queries_is_refused_unread() -> None:
    start = len(QUALITY) - 8 - int.from_bytes(QUALITY[-8:-4], "little")
    meta, _ = thrift.decode(QUALITY, start)
    meta[3] = (thrift.I64, 3_000_000)
    for group in meta.get_value(4)[1]:
        group[3] = (thrift.I64, 3_000_000)
    footer = thrift.encode(meta)
    crafted = QUALITY[:start] + footer + len(footer).to_bytes(4, "little") + b"PAR1"
    with pytest.raises(IntegrityError, match="declares 3000000 rows; a quality sample holds at most"):
        decode_quality(crafted, "artifacts/q.quality.parquet")


@fuzz
@given(data=st.binary(max_size=4096) | mutated([QUALITY]))
def test_quality_samples_from_random_or_mutated_bytes(data: bytes) -> None:
    only_typed(lambda d: decode_quality(d, "artifacts/q.quality.parquet"), data, (IntegrityError,))
