"""The codecs, property-tested: segments, deletion vectors, row index, manifests,
commit records and config; plus what a plain Parquet reader sees in a segment."""

from __future__ import annotations

import json
import string
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import vecdr
from vecdr.errors import IntegrityError, UnsupportedFormatError
from vecdr.format import FORMAT_VERSION
from vecdr.format.deletions import (
    decode_deletion_slice,
    decode_deletions,
    encode_deletion_file,
    encode_deletions,
)
from vecdr.format.hashing import row_hashes
from vecdr.format.manifest import DeletionRef, Manifest, SegmentEntry
from vecdr.format.objects import ObjectRef
from vecdr.format.records import CommitRecord, Config
from vecdr.format.rowhashes import decode_row_hashes, encode_row_hashes
from vecdr.format.segment import (
    decode_segment,
    encode_segment,
    max_segment_rows,
    segment_schema,
    vectors_from_arrow,
    vectors_to_arrow,
)

#: Bit patterns a float codec is most likely to get wrong.
SPECIAL_BITS = [
    0x00000000,  # +0.0
    0x80000000,  # -0.0
    0x00000001,  # smallest subnormal
    0x807FFFFF,  # largest negative subnormal
    0x7F800000,  # +inf
    0xFF800000,  # -inf
    0x7FC00000,  # quiet NaN
    0x7FC00001,  # quiet NaN with a payload
    0xFFFFFFFF,  # negative NaN, all payload bits set
    0x7F800001,  # signalling NaN
    0x7F7FFFFF,  # largest finite
]

float_bits = st.one_of(st.sampled_from(SPECIAL_BITS), st.integers(0, 2**32 - 1))


@st.composite
def segments(draw: st.DrawFn) -> tuple[pa.Table, np.ndarray]:
    """A segment table with int64 or string ids and arbitrary float32 bit patterns."""
    dimension = draw(st.integers(1, 64))
    n = draw(st.integers(0, 40))
    bits = draw(hnp.arrays(np.uint32, (n, dimension), elements=float_bits))
    vectors = bits.view(np.float32)
    if draw(st.booleans()):
        kind = "int64"
        ids = pa.array(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n, unique=True)),
            pa.int64(),
        )
    else:
        kind = "string"
        ids = pa.array(draw(st.lists(st.text(max_size=12), min_size=n, max_size=n, unique=True)), pa.string())
    table = pa.table({"id": ids, "vector": vectors_to_arrow(vectors)}).cast(segment_schema(dimension, kind))
    return table, bits


@given(segments())
def test_segment_round_trip_is_bit_exact(segment: tuple[pa.Table, np.ndarray]) -> None:
    table, bits = segment
    decoded = decode_segment(encode_segment(table))
    assert decoded.schema.equals(table.schema)
    assert decoded.column("id").equals(table.column("id"))
    dimension = bits.shape[1]
    got = vectors_from_arrow(decoded.column("vector"), dimension)
    assert got.dtype == np.float32
    assert got.shape == bits.shape
    np.testing.assert_array_equal(np.ascontiguousarray(got).view(np.uint32), bits)


def test_every_special_float_survives_a_segment() -> None:
    bits = np.array([SPECIAL_BITS, SPECIAL_BITS[::-1]], dtype=np.uint32)
    table = pa.table({"id": pa.array([7, -7], pa.int64()), "vector": vectors_to_arrow(bits.view(np.float32))}).cast(
        segment_schema(len(SPECIAL_BITS), "int64")
    )
    got = vectors_from_arrow(decode_segment(encode_segment(table)).column("vector"), len(SPECIAL_BITS))
    np.testing.assert_array_equal(np.ascontiguousarray(got).view(np.uint32), bits)


@given(
    st.integers(1, 16),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.text(max_size=8), st.floats(allow_nan=False)),
        max_size=30,
        unique_by=lambda r: r[0],
    ),
)
def test_segment_attributes_round_trip(dimension: int, rows: list[tuple[int, str, float]]) -> None:
    attributes = pa.schema([pa.field("label", pa.string()), pa.field("weight", pa.float64())])
    vectors = np.arange(len(rows) * dimension, dtype=np.float32).reshape(-1, dimension)
    table = pa.table(
        {
            "id": pa.array([r[0] for r in rows], pa.int64()),
            "vector": vectors_to_arrow(vectors),
            "label": pa.array([r[1] for r in rows], pa.string()),
            "weight": pa.array([r[2] for r in rows], pa.float64()),
        }
    ).cast(segment_schema(dimension, "int64", attributes))
    assert decode_segment(encode_segment(table)).equals(table)


def test_truncated_segment_is_an_integrity_error() -> None:
    table = pa.table(
        {"id": pa.array([1, 2], pa.int64()), "vector": vectors_to_arrow(np.ones((2, 4), np.float32))}
    ).cast(segment_schema(4, "int64"))
    data = encode_segment(table)
    with pytest.raises(IntegrityError) as caught:
        decode_segment(data[: len(data) // 2], "segments/ab/abc.parquet")
    assert caught.value.path == "segments/ab/abc.parquet"


# -- plain Parquet, readable without vecdr ---------------------------------------


def _segment_file(tmp_path: Path, n: int = 5000, dimension: int = 32) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    ids = rng.permutation(n).astype(np.int64) * 3
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    vectors[0] = -0.0
    table = pa.table({"id": pa.array(ids), "vector": vectors_to_arrow(vectors)}).cast(
        segment_schema(dimension, "int64")
    )
    path = tmp_path / "segment.parquet"
    path.write_bytes(encode_segment(table))
    return path, ids, vectors


def test_segment_opens_with_plain_pyarrow(tmp_path: Path) -> None:
    path, ids, vectors = _segment_file(tmp_path)
    table = pq.read_table(path)
    np.testing.assert_array_equal(table.column("id").to_numpy(), ids)
    got = np.array(table.column("vector").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), vectors.view(np.uint32))


def test_segment_opens_with_duckdb(tmp_path: Path) -> None:
    path, ids, vectors = _segment_file(tmp_path)
    con = duckdb.connect()
    rows = con.execute("SELECT id, vector FROM read_parquet(?)", [str(path)]).fetchall()
    assert [r[0] for r in rows] == ids.tolist()
    got = np.array([r[1] for r in rows], dtype=np.float32)
    np.testing.assert_array_equal(got.view(np.uint32), vectors.view(np.uint32))
    count, dims = con.execute("SELECT count(*), min(len(vector)) FROM read_parquet(?)", [str(path)]).fetchone()
    assert (count, dims) == (len(ids), vectors.shape[1])


def test_segment_vectors_use_byte_stream_split_and_zstd(tmp_path: Path) -> None:
    path, _, _ = _segment_file(tmp_path)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_row_groups >= 1
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        columns = {group.column(i).path_in_schema: group.column(i) for i in range(group.num_columns)}
        vector = columns["vector.list.element"]
        assert "BYTE_STREAM_SPLIT" in vector.encodings
        assert vector.compression == "ZSTD"
        assert columns["id"].compression == "ZSTD"
    schema = pq.read_schema(path)
    assert pa.types.is_fixed_size_list(schema.field("vector").type)
    assert schema.field("vector").type.value_type == pa.float32()


def test_segment_compresses_floats(tmp_path: Path) -> None:
    """Low-entropy mantissas must shrink: the reason for BYTE_STREAM_SPLIT + zstd."""
    rng = np.random.default_rng(6)
    vectors = (rng.integers(-50, 50, (4000, 32)) / 8).astype(np.float32)
    table = pa.table({"id": pa.array(np.arange(4000)), "vector": vectors_to_arrow(vectors)}).cast(
        segment_schema(32, "int64")
    )
    assert len(encode_segment(table)) < vectors.nbytes * 0.5


# -- deletion vectors ------------------------------------------------------------


@given(st.lists(st.booleans(), max_size=3000))
def test_deletion_vector_round_trip(dead: list[bool]) -> None:
    mask = np.array(dead, dtype=bool)
    got = decode_deletions(encode_deletions(mask), len(mask))
    assert got.dtype == bool
    np.testing.assert_array_equal(got, mask)


@given(st.integers(0, 5000), st.data())
def test_deletion_vector_dense_and_sparse(rows: int, data: st.DataObject) -> None:
    dead = np.zeros(rows, dtype=bool)
    if rows:
        picks = data.draw(st.lists(st.integers(0, rows - 1), max_size=rows))
        dead[picks] = True
    np.testing.assert_array_equal(decode_deletions(encode_deletions(dead), rows), dead)


def test_deletion_vector_rejects_the_wrong_row_count_and_junk() -> None:
    data = encode_deletions(np.array([True, False, True]))
    with pytest.raises(ValueError):
        decode_deletions(data, 4)
    with pytest.raises(ValueError):
        decode_deletions(b"garbage", 3)
    with pytest.raises(ValueError, match="damaged"):
        decode_deletions(data[:-2], 3)


@given(st.lists(st.lists(st.booleans(), min_size=1, max_size=500), max_size=8))
def test_deletion_file_holds_each_vector_at_its_range(masks: list[list[bool]]) -> None:
    arrays = [np.array(m, dtype=bool) for m in masks]
    data, ranges = encode_deletion_file(arrays)
    assert len(ranges) == len(arrays)
    assert sum(length for _, length in ranges) == len(data)
    for mask, (offset, length) in zip(arrays, ranges, strict=True):
        np.testing.assert_array_equal(decode_deletion_slice(data, offset, length, len(mask)), mask)


def test_deletion_file_rejects_a_range_outside_it_or_across_two_vectors() -> None:
    data, ranges = encode_deletion_file([np.array([True, False]), np.array([False, False, True])])
    (first, first_len), (second, second_len) = ranges
    with pytest.raises(ValueError, match="outside"):
        decode_deletion_slice(data, second, second_len + 1, 3)
    with pytest.raises(ValueError):
        decode_deletion_slice(data, first, first_len + second_len, 2)
    with pytest.raises(ValueError):
        decode_deletion_slice(data, first + 1, first_len, 2)


# -- row-hash sidecars ------------------------------------------------------------


@given(st.integers(0, 300), st.booleans(), st.data())
def test_row_hash_sidecar_round_trip(n: int, strings: bool, data: st.DataObject) -> None:
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ids = (
        pa.array([f"id{i}" for i in rng.permutation(n)])
        if strings
        else pa.array(rng.permutation(n) * 5 - n, pa.int64())
    )
    hashes = rng.integers(0, 256, (n, 16)).astype(np.uint8)
    got_ids, got_hashes = decode_row_hashes(encode_row_hashes(ids, hashes))
    assert got_ids.equals(ids)
    assert got_hashes.shape == (n, 16)
    np.testing.assert_array_equal(got_hashes, hashes)


def test_junk_row_hash_sidecar_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError) as caught:
        decode_row_hashes(b"PAR1 junk", "artifacts/ab/x.hashes.parquet")
    assert caught.value.path == "artifacts/ab/x.hashes.parquet"


# -- row hashes ------------------------------------------------------------------


@given(
    hnp.arrays(np.uint32, st.tuples(st.integers(1, 20), st.integers(1, 16)), elements=float_bits),
    st.data(),
)
def test_row_hash_changes_with_any_bit(bits: np.ndarray, data: st.DataObject) -> None:
    n, d = bits.shape
    before = row_hashes(bits.view(np.float32))
    assert before.shape == (n, 16)
    row = data.draw(st.integers(0, n - 1))
    col = data.draw(st.integers(0, d - 1))
    bit = data.draw(st.integers(0, 31))
    changed = bits.copy()
    changed[row, col] ^= np.uint32(1 << bit)
    after = row_hashes(changed.view(np.float32))
    assert not np.array_equal(after[row], before[row])
    others = np.arange(n) != row
    np.testing.assert_array_equal(after[others], before[others])
    # The same data hashes the same.
    np.testing.assert_array_equal(row_hashes(bits.copy().view(np.float32)), before)


def test_row_hash_tells_negative_zero_from_zero() -> None:
    zero = row_hashes(np.zeros((1, 4), np.float32))
    negative = row_hashes(np.full((1, 4), -0.0, np.float32))
    assert not np.array_equal(zero, negative)


# -- manifests, commit records, config -------------------------------------------

hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
names = st.text(min_size=1, max_size=20)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
timestamps = st.datetimes().map(lambda t: t.isoformat() + "Z")


@st.composite
def refs(draw: st.DrawFn, kind: str = "segments", ext: str = "parquet") -> ObjectRef:
    digest = draw(hexes)
    return ObjectRef(f"{kind}/{digest[:2]}/{digest}.{ext}", digest, draw(st.integers(0, 2**40)))


@st.composite
def manifests(draw: st.DrawFn) -> Manifest:
    dimension = draw(st.integers(1, 4096))
    id_kind = draw(st.sampled_from(["int64", "string"]))
    attributes = pa.schema(
        [
            pa.field(f"a{i}", t)
            for i, t in enumerate(
                draw(st.lists(st.sampled_from([pa.int32(), pa.string(), pa.float64(), pa.bool_()]), max_size=3))
            )
        ]
    )
    segs = []
    for _ in range(draw(st.integers(0, 5))):
        rows = draw(st.integers(1, max_segment_rows(dimension)))
        deletions = draw(st.none() | st.builds(DeletionRef, refs("artifacts", "del"),
                                               st.integers(0, 2**30), st.integers(1, 2**20)))
        live = rows if deletions is None else draw(st.integers(1, rows))
        segment = draw(refs().filter(lambda r: all(r.key != s.object.key for s in segs)))
        segs.append(SegmentEntry(segment, rows, live, draw(refs("artifacts", "hashes.parquet")), deletions))
    return Manifest(
        snapshot=draw(st.uuids()).hex,
        collection=draw(names),
        created_at=draw(timestamps),
        dimension=dimension,
        id_type=id_kind,
        schema=segment_schema(dimension, id_kind, attributes),
        segments=tuple(segs),
        index=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=5)),
        artifacts=draw(st.dictionaries(st.sampled_from(["trained", "native_index"]), refs("artifacts", "bin"))),
        parent=draw(st.none() | st.uuids().map(lambda u: u.hex)),
        tags=tuple(draw(st.lists(names, max_size=3))),
        source=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
        stats=draw(st.dictionaries(st.text(max_size=10), json_values, max_size=3)),
        software=draw(st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)),
    )


@given(manifests())
def test_manifest_round_trip(manifest: Manifest) -> None:
    data = manifest.to_bytes()
    again = Manifest.from_bytes(data)
    assert again == manifest
    assert again.schema.equals(manifest.schema)
    assert again.to_bytes() == data  # canonical: equal manifests, equal bytes, equal hashes
    assert again.rows == sum(s.live for s in manifest.segments)


@given(
    st.integers(1, 10**12),
    st.uuids(),
    names,
    st.builds(lambda u, digest, size: ObjectRef(f"manifests/{u.hex}.json", digest, size),
              st.uuids(), hexes, st.integers(0, 2**40)),
    timestamps,
    st.none() | st.uuids(),
    st.lists(names, max_size=3),
    st.integers(0, 10**12),
)
def test_commit_record_round_trip(seq, snapshot, collection, manifest, created, parent, tags, rows) -> None:  # type: ignore[no-untyped-def]
    record = CommitRecord(
        seq=seq,
        snapshot=snapshot.hex,
        collection=collection,
        manifest=manifest,
        created_at=created,
        parent=parent.hex if parent else None,
        tags=tuple(tags),
        rows=rows,
    )
    data = record.to_bytes()
    assert CommitRecord.from_bytes(data, record.key) == record
    assert record.key == f"commits/{seq:020d}.json"


@given(st.uuids(), timestamps, st.dictionaries(st.text(max_size=10), json_values, max_size=4))
def test_config_round_trip(repo_id, created, capabilities) -> None:  # type: ignore[no-untyped-def]
    config = Config(id=repo_id.hex, created_at=created, capabilities=capabilities)
    assert Config.from_bytes(config.to_bytes()) == config
    assert config.format == FORMAT_VERSION


def _bump(data: bytes, by: int = 1) -> bytes:
    doc = json.loads(data)
    doc["format"] = FORMAT_VERSION + by
    return json.dumps(doc).encode()


@given(manifests(), st.integers(1, 1000))
def test_newer_manifest_format_is_refused(manifest: Manifest, by: int) -> None:
    with pytest.raises(UnsupportedFormatError):
        Manifest.from_bytes(_bump(manifest.to_bytes(), by))


def test_newer_config_and_commit_formats_are_refused() -> None:
    config = Config(id="a" * 32, created_at="2024-01-01T00:00:00Z")
    with pytest.raises(UnsupportedFormatError):
        Config.from_bytes(_bump(config.to_bytes()))
    with pytest.raises(UnsupportedFormatError):
        Config.from_bytes(Config(id="a", created_at="t", format=FORMAT_VERSION + 1).to_bytes())
    record = CommitRecord(1, "b" * 32, "c", ObjectRef("manifests/x.json", "0" * 64, 1), "t")
    with pytest.raises(UnsupportedFormatError):
        CommitRecord.from_bytes(_bump(record.to_bytes()), record.key)


def test_opening_a_repository_of_a_newer_format_is_refused(tmp_path: Path) -> None:
    vecdr.init(tmp_path / "repo")
    config = tmp_path / "repo" / "config.json"
    config.write_bytes(_bump(config.read_bytes()))
    with pytest.raises(UnsupportedFormatError):
        vecdr.open_repository(tmp_path / "repo")


@pytest.mark.parametrize("junk", [b"", b"{", b"[]", b"\xff\xfe", b'"a string"'])
def test_malformed_documents_are_integrity_errors(junk: bytes) -> None:
    for decode in (
        lambda: Manifest.from_bytes(junk, "manifests/m.json"),
        lambda: CommitRecord.from_bytes(junk, "commits/1.json"),
        lambda: Config.from_bytes(junk, "config.json"),
    ):
        with pytest.raises(IntegrityError):
            decode()


def test_manifest_missing_a_field_is_an_integrity_error() -> None:
    manifest = Manifest(
        snapshot="a" * 32,
        collection="c",
        created_at="t",
        dimension=4,
        id_type="int64",
        schema=segment_schema(4, "int64"),
        segments=(),
    )
    doc = json.loads(manifest.to_bytes())
    del doc["segments"]
    with pytest.raises(IntegrityError):
        Manifest.from_bytes(json.dumps(doc).encode(), "manifests/m.json")


@example(snapshot="0" * 32)
@given(st.text(string.hexdigits.lower()[:16], min_size=32, max_size=32))
def test_object_refs_round_trip(snapshot: str) -> None:
    ref = ObjectRef(f"manifests/{snapshot}.json", snapshot * 2, 123)
    assert ObjectRef.from_dict(json.loads(json.dumps(ref.to_dict())), "manifests") == ref


@given(n=st.integers(2, 300), d=st.integers(1, 16), start=st.integers(0, 299), data=st.data())
def test_vectors_of_a_slice_are_only_the_slice(n: int, d: int, start: int, data: st.DataObject) -> None:
    start = min(start, n - 1)
    length = data.draw(st.integers(1, n - start))
    x = np.arange(n * d, dtype=np.float32).reshape(n, d)
    column = pa.chunked_array([vectors_to_arrow(x)]).slice(start, length)
    assert np.array_equal(vectors_from_arrow(column, d), x[start : start + length])


ATTRIBUTE_TYPES = [
    pa.int64(),
    pa.int16(),
    pa.float32(),
    pa.float64(),
    pa.bool_(),
    pa.string(),
    pa.binary(),
    pa.timestamp("us"),
    pa.timestamp("us", tz="UTC"),
    pa.date32(),
]


def _values(typ: pa.DataType, n: int, seed: int) -> pa.Array:
    rng = np.random.default_rng(seed)
    raw = rng.integers(-(2**40), 2**40, n)
    if pa.types.is_boolean(typ):
        return pa.array(raw % 2 == 0)
    if pa.types.is_string(typ) or pa.types.is_binary(typ):
        return pa.array([str(v) for v in raw]).cast(typ)
    if pa.types.is_date32(typ):
        return pa.array((raw % 2**30).astype(np.int32)).cast(typ)
    if pa.types.is_floating(typ):
        return pa.array(raw.astype(np.float64)).cast(typ)
    if pa.types.is_int16(typ):
        return pa.array((raw % 2**15).astype(np.int16))
    return pa.array(raw).cast(typ)


@pytest.mark.parametrize("typ", ATTRIBUTE_TYPES, ids=str)
@given(nulls=st.sets(st.integers(0, 11), max_size=6), seed=st.integers(0, 1000))
def test_a_rows_hash_does_not_depend_on_the_rest_of_its_batch(typ: pa.DataType, nulls: set[int], seed: int) -> None:
    n = 12
    vectors = np.zeros((n, 4), np.float32)
    values = _values(typ, n, seed)
    is_null = pa.array([i in nulls for i in range(n)])
    with_nulls = pc.if_else(is_null, pa.scalar(None, typ), values)
    plain = row_hashes(vectors, pa.table({"a": values}))
    mixed = row_hashes(vectors, pa.table({"a": with_nulls}))
    kept = [i for i in range(n) if i not in nulls]
    assert np.array_equal(plain[kept], mixed[kept])  # other rows unchanged by a NULL
    for i in nulls:
        assert not np.array_equal(plain[i], mixed[i])  # a NULL differs from any value
    # Each row alone hashes as it does in the batch.
    single = np.concatenate([row_hashes(vectors[i : i + 1], pa.table({"a": with_nulls.slice(i, 1)})) for i in range(n)])
    assert np.array_equal(single, mixed)


def test_row_hashes_take_temporal_values_no_python_datetime_holds() -> None:
    extremes = pa.array([2**62, -(2**62), 2**63 - 1, None], pa.timestamp("us"))
    days = pa.array([2**31 - 1, -(2**31), 0, None], pa.int32()).cast(pa.date32())
    hashes = row_hashes(np.zeros((4, 2), np.float32), pa.table({"ts": extremes, "day": days}))
    assert len({h.tobytes() for h in hashes}) == 4


def test_adjacent_string_columns_do_not_run_together() -> None:
    a = pa.table({"x": ["ab", "a"], "y": ["c", "bc"]})
    hashes = row_hashes(np.zeros((2, 2), np.float32), a)
    assert not np.array_equal(hashes[0], hashes[1])


def test_arrow_writer_fallback_writes_the_same_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should Arrow lay vectors out unexpectedly, it writes the whole file, with equal content."""
    from vecdr.format import segment

    rng = np.random.default_rng(3)
    table = pa.table(
        {
            "id": pa.array(np.arange(500, dtype=np.int64)),
            "vector": segment.vectors_to_arrow(rng.standard_normal((500, 16)).astype(np.float32)),
            "note": pa.array([f"row {i}" for i in range(500)]),
        }
    )
    # Arrow writes a nullable vector column itself (segments are always cast non-null)
    assert decode_segment(encode_segment(table)).equals(table)
    table = table.cast(segment_schema(16, "int64", pa.schema([pa.field("note", pa.string())])))
    direct = encode_segment(table)
    monkeypatch.setattr(segment, "_vector_layout", lambda schema: None)
    fallback = encode_segment(table)
    assert bytes(fallback) != bytes(direct)
    assert decode_segment(fallback).equals(decode_segment(direct))
    assert decode_segment(direct).equals(table)
    direct_meta = pq.ParquetFile(pa.BufferReader(direct)).metadata
    fallback_meta = pq.ParquetFile(pa.BufferReader(fallback)).metadata
    assert direct_meta.schema.equals(fallback_meta.schema)
    assert direct_meta.metadata == fallback_meta.metadata  # the same Arrow schema
