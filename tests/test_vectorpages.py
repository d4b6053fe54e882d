"""The vector column's own Parquet pages and the Thrift codec behind its footer."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from vecdr.format import thrift
from vecdr.format.segment import decode_segment, encode_segment, segment_schema, vectors_from_arrow, vectors_to_arrow
from vecdr.format.vectorpages import PAGE_BYTES


def _footer(data: bytes | pa.Buffer) -> bytes:
    raw = bytes(data)
    size = int.from_bytes(raw[-8:-4], "little")
    return raw[-8 - size : -8]


def _table(n: int, dimension: int, seed: int = 0) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dimension)).astype(np.float32)
    labels = [None if i % 7 == 0 else f"label {i % 5}" for i in range(n)]
    attributes = pa.schema([pa.field("label", pa.string()), pa.field("tags", pa.list_(pa.int32()))])
    table = pa.table(
        {
            "id": pa.array(rng.permutation(n).astype(np.int64)),
            "vector": vectors_to_arrow(vectors),
            "label": pa.array(labels, pa.string()),
            "tags": pa.array([None if i % 3 == 0 else list(range(i % 4)) for i in range(n)], pa.list_(pa.int32())),
        }
    ).cast(segment_schema(dimension, "int64", attributes))
    return table, vectors


def test_many_row_groups_and_pages_read_back_in_every_reader(tmp_path: Path) -> None:
    dimension = 1024  # 4096-row groups, 256-row pages
    n = 9000
    table, vectors = _table(n, dimension)
    data = encode_segment(table)
    meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert meta.num_row_groups == 3
    assert [meta.row_group(i).num_rows for i in range(3)] == [4096, 4096, 808]
    assert decode_segment(data).equals(table)

    path = tmp_path / "segment.parquet"
    path.write_bytes(data)
    reader = pq.ParquetFile(path)
    for i in range(3):  # row groups and column projections stand alone
        group = reader.read_row_group(i, columns=["vector"])
        got = vectors_from_arrow(group.column("vector"), dimension)
        np.testing.assert_array_equal(got, vectors[4096 * i : 4096 * (i + 1)])
    assert reader.read(columns=["label", "id"]).equals(table.select(["label", "id"]))
    assert sum(b.num_rows for b in reader.iter_batches(batch_size=1000)) == n

    con = duckdb.connect()
    total, width, labelled = con.execute(
        "SELECT sum(list_sum(vector)), max(len(vector)), count(label) FROM read_parquet(?)", [str(path)]
    ).fetchone()
    assert width == dimension
    assert labelled == sum(1 for i in range(n) if i % 7)
    assert abs(total - float(vectors.sum(dtype=np.float64))) < 1e-2


def test_pages_hold_about_a_mebibyte_and_rows_never_span_them() -> None:
    dimension = 1000
    table, _ = _table(700, dimension)
    data = bytes(encode_segment(table))
    column = pq.ParquetFile(pa.BufferReader(data)).metadata.row_group(0).column(1)
    assert column.path_in_schema == "vector.list.element"
    assert column.num_values == 700 * dimension
    assert column.encodings == ("RLE", "BYTE_STREAM_SPLIT")
    pages, pos = [], column.data_page_offset
    while pos < column.data_page_offset + column.total_compressed_size:
        header, pos = thrift.decode(data, pos)
        pages.append(header.get_value(8))
        pos += header.get_value(3)
    assert pos == column.data_page_offset + column.total_compressed_size
    rows_per_page = PAGE_BYTES // (4 * dimension)
    assert [p.get_value(3) for p in pages] == [rows_per_page, rows_per_page, 700 - 2 * rows_per_page]
    assert [p.get_value(1) for p in pages] == [p.get_value(3) * dimension for p in pages]
    assert all(p.get_value(2) == 0 and p.get_value(7) is True for p in pages)


@given(st.integers(1, 40), st.integers(1, 3000))
def test_any_shape_round_trips(dimension: int, n: int) -> None:
    vectors = np.random.default_rng(n).standard_normal((n, dimension)).astype(np.float32)
    table = pa.table({"id": pa.array([str(i) for i in range(n)]), "vector": vectors_to_arrow(vectors)}).cast(
        segment_schema(dimension, "string")
    )
    decoded = decode_segment(encode_segment(table))
    assert decoded.equals(table)


def test_sliced_and_chunked_vector_columns_encode_their_own_rows() -> None:
    table, vectors = _table(3000, 8)
    chunked = pa.concat_tables([table.slice(0, 1000), table.slice(1000, 1500), table.slice(2500)])
    assert chunked.column("vector").num_chunks == 3
    assert decode_segment(encode_segment(chunked)).equals(table)
    window = table.slice(17, 100)
    np.testing.assert_array_equal(
        vectors_from_arrow(decode_segment(encode_segment(window)).column("vector"), 8), vectors[17:117]
    )


# -- Thrift compact protocol -------------------------------------------------------


def test_arrow_footers_re_encode_to_the_same_bytes() -> None:
    table, _ = _table(5000, 16)
    stream = pa.BufferOutputStream()
    pq.write_table(table, stream, row_group_size=1000, write_statistics=True, write_page_index=True)
    for data in (stream.getvalue(), encode_segment(table)):
        footer = _footer(data)
        decoded, end = thrift.decode(footer)
        assert end == len(footer)
        assert thrift.encode(decoded) == footer


int64s = st.integers(-(2**63), 2**63 - 1)
leaves = st.one_of(
    st.tuples(st.just(thrift.BOOL), st.booleans()),
    st.tuples(st.just(thrift.BYTE), st.integers(-128, 127)),
    st.tuples(st.just(thrift.I16), st.integers(-(2**15), 2**15 - 1)),
    st.tuples(st.just(thrift.I32), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just(thrift.I64), int64s),
    st.tuples(st.just(thrift.DOUBLE), st.floats(allow_nan=False)),
    st.tuples(st.just(thrift.BINARY), st.binary(max_size=40)),
    st.tuples(st.just(thrift.LIST), st.tuples(st.just(thrift.I64), st.lists(int64s, max_size=40))),
    st.tuples(st.just(thrift.LIST), st.tuples(st.just(thrift.BOOL), st.lists(st.booleans(), max_size=20))),
)


structs = st.recursive(
    st.dictionaries(st.integers(-(2**15), 2**15 - 1), leaves, max_size=8).map(thrift.Struct),
    lambda inner: st.dictionaries(
        st.integers(-(2**15), 2**15 - 1),
        st.one_of(
            leaves,
            st.tuples(st.just(thrift.STRUCT), inner),
            st.tuples(st.just(thrift.LIST), st.tuples(st.just(thrift.STRUCT), st.lists(inner, max_size=16))),
        ),
        max_size=8,
    ).map(thrift.Struct),
    max_leaves=30,
)


@given(structs)
def test_thrift_structs_round_trip(value: thrift.Struct) -> None:
    data = thrift.encode(value)
    decoded, end = thrift.decode(data)
    assert end == len(data)
    assert decoded == value
    assert list(decoded) == list(value)  # field order kept


def test_truncated_thrift_is_an_error() -> None:
    data = thrift.encode(thrift.Struct({1: (thrift.BINARY, b"x" * 50), 2: (thrift.I32, 3)}))
    for cut in (1, 10, len(data) - 1):
        try:
            thrift.decode(data[:cut])
        except thrift.ThriftError:
            continue
        raise AssertionError(f"decoding {cut} of {len(data)} bytes did not fail")
