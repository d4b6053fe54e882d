"""Milvus's columnar wire format (``FieldData``) to Arrow and back, column at a time.

pymilvus's own row API turns every vector into a Python list of floats, both
ways; here a float vector column moves as one packed byte string (protobuf's
packed ``repeated float`` is the little-endian float32 array itself), so vectors
stay bit for bit (``-0.0``, subnormals) and cost a copy, not a loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from pymilvus.grpc_gen import milvus_pb2, schema_pb2

from vecdr.backends.milvus.types import CODES, DYNAMIC, FieldSpec
from vecdr.errors import SchemaError
from vecdr.format.segment import vectors_from_arrow, vectors_to_arrow

#: Milvus type -> the ScalarField slot its values travel in
SLOT = {
    "BOOL": "bool_data",
    "INT8": "int_data",
    "INT16": "int_data",
    "INT32": "int_data",
    "INT64": "long_data",
    "FLOAT": "float_data",
    "DOUBLE": "double_data",
    "VARCHAR": "string_data",
    "JSON": "json_data",
    "GEOMETRY": "geometry_wkt_data",
    "TIMESTAMPTZ": "string_data",
    "ARRAY": "array_data",
}
_NUMPY = {"BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
          "FLOAT": np.float32, "DOUBLE": np.float64}  # fmt: skip
_PACKED_WIDTH = {"FLOAT": "<f4", "DOUBLE": "<f8"}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _set_packed(message: Any, data: bytes) -> None:
    """Fill field 1 (``repeated float/double data``) of ``message`` from little-endian bytes."""
    if data:
        message.MergeFromString(b"\x0a" + _varint(len(data)) + data)


def _packed(message: Any, dtype: str) -> np.ndarray:
    """Field 1 of a ``FloatArray``/``DoubleArray`` as numpy, read from its wire bytes."""
    raw = message.SerializeToString()
    if not raw:
        return np.empty(0, dtype)
    if raw[0] == 0x0A:
        length, shift, pos = 0, 0, 1
        while pos < len(raw):
            byte = raw[pos]
            length |= (byte & 0x7F) << shift
            pos += 1
            if byte < 0x80:
                break
            shift += 7
        if pos + length == len(raw):
            return np.frombuffer(raw, dtype, offset=pos)
    return np.asarray(message.data, dtype)  # not one packed run: let protobuf decode it


# -- decoding ---------------------------------------------------------------------


def _with_nulls(values: pa.Array, valid: np.ndarray | None, rows: int) -> pa.Array:
    """Values sent in full (one per row) or compacted (one per valid row), nulls where invalid."""
    if valid is None or len(valid) == 0 or valid.all():
        return values
    at = np.arange(rows) if len(values) == rows else np.cumsum(valid) - 1
    return values.take(pa.array(at, mask=~valid))


def decode(fd: Any, spec: FieldSpec | None, rows: int) -> pa.Array:
    """One result column; ``spec`` None for the dynamic field (its JSON text)."""
    valid = np.asarray(fd.valid_data, dtype=bool) if len(fd.valid_data) else None
    if spec is None:
        return pa.array(list(fd.scalars.json_data.data), pa.binary()).cast(pa.string())
    if spec.type == "FLOAT_VECTOR":
        d = spec.dimension
        flat = _packed(fd.vectors.float_vector, "<f4")
        values = vectors_to_arrow(flat.reshape(-1, d))
        return _with_nulls(values, valid, rows)
    slot = SLOT[spec.type]
    container = getattr(fd.scalars, slot).data
    if spec.type in _PACKED_WIDTH:
        values = pa.array(_packed(getattr(fd.scalars, slot), _PACKED_WIDTH[spec.type]))
    elif spec.type in _NUMPY:
        values = pa.array(np.asarray(container, dtype=_NUMPY[spec.type]))
    elif spec.type == "JSON":
        values = pa.array(list(container), pa.binary()).cast(pa.string())
    elif spec.type == "ARRAY":
        element = SLOT[spec.element_type or ""]
        values = pa.array([list(getattr(row, element).data) for row in container], spec.arrow_type())
    else:
        values = pa.array(list(container), pa.string())
    return _with_nulls(values.cast(spec.arrow_type()), valid, rows)


def columns(results: Any) -> dict[str, Any]:
    """The ``FieldData`` of a query result, by name (the dynamic field as ``$meta``)."""
    return {DYNAMIC if fd.is_dynamic else fd.field_name: fd for fd in results.fields_data}


def row_count(fd: Any, spec: FieldSpec | None) -> int:
    """Rows in a result column (nullable columns say it with ``valid_data``)."""
    if len(fd.valid_data):
        return len(fd.valid_data)
    if spec is None:
        return len(fd.scalars.json_data.data)
    if spec.type == "FLOAT_VECTOR":
        return len(fd.vectors.float_vector.data) // spec.dimension
    return len(getattr(fd.scalars, SLOT[spec.type]).data)


# -- encoding ---------------------------------------------------------------------


def encode(column: pa.Array | pa.ChunkedArray, spec: FieldSpec) -> Any:
    """One insert column. Nullable fields (and fields with a default) travel compacted:
    only the valid values, with ``valid_data`` marking each row, as pymilvus sends them."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    fd = schema_pb2.FieldData(type=spec.code, field_name=spec.name)
    if spec.nullable or spec.default_value is not None:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        fd.valid_data.extend(valid.tolist())
        if not valid.all():
            arr = arr.filter(pa.array(valid))
    elif arr.null_count:
        raise SchemaError(f"field {spec.name!r} is not nullable but {arr.null_count} row(s) have no value")
    if spec.type == "FLOAT_VECTOR":
        fd.vectors.dim = spec.dimension
        vectors = vectors_from_arrow(arr, spec.dimension)
        _set_packed(fd.vectors.float_vector, np.ascontiguousarray(vectors, dtype="<f4").tobytes())
        return fd
    slot = getattr(fd.scalars, SLOT[spec.type])
    if spec.type in _PACKED_WIDTH:
        _set_packed(slot, arr.to_numpy(zero_copy_only=False).astype(_PACKED_WIDTH[spec.type]).tobytes())
    elif spec.type in _NUMPY:
        slot.data.extend(arr.to_numpy(zero_copy_only=False).tolist())
    elif spec.type == "JSON":
        slot.data.extend(arr.cast(pa.binary()).to_pylist())
    elif spec.type == "ARRAY":
        slot.element_type = CODES[spec.element_type or ""]
        element = SLOT[spec.element_type or ""]
        for row in arr.to_pylist():
            getattr(slot.data.add(), element).data.extend(row or [])
    else:
        slot.data.extend(arr.cast(pa.string()).to_pylist())
    return fd


def encode_dynamic(column: pa.Array | pa.ChunkedArray) -> Any:
    """The dynamic field's column: each row's extra keys as a JSON object (``{}`` for none)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    fd = schema_pb2.FieldData(type=CODES["JSON"], field_name=DYNAMIC, is_dynamic=True)
    fd.scalars.json_data.data.extend(arr.cast(pa.binary()).fill_null(b"{}").to_pylist())
    return fd


def insert_request(
    collection: str, partition: str, db: str, rows: int, fields: list[Any]
) -> milvus_pb2.InsertRequest:
    request = milvus_pb2.InsertRequest(
        db_name=db, collection_name=collection, partition_name=partition, num_rows=rows
    )
    request.fields_data.extend(fields)
    return request
