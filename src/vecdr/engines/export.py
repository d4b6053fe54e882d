"""Exporting a snapshot's live rows to Parquet or ``.npy`` for use outside vecdr."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from vecdr.backends.parquet import ParquetTarget
from vecdr.durable import check_replaceable, publish, temp_beside, writing
from vecdr.engines.restore import RestoreResult, open_snapshot, restore
from vecdr.engines.segments import iter_live
from vecdr.errors import SchemaError, TargetExistsError
from vecdr.format.manifest import Manifest
from vecdr.format.segment import vectors_from_arrow
from vecdr.progress import NULL, Reporter
from vecdr.repository import Repository


def export(
    repo: Repository,
    ref: str | None,
    out: str | os.PathLike[str],
    *,
    collection: str | None = None,
    force: bool = False,
    reporter: Reporter = NULL,
) -> dict[str, object]:
    """Write snapshot ``ref`` to ``out``.

    ``*.npy``: the vectors as an ``(n, d)`` float32 array, and the ids beside it in
    ``*.ids.npy`` (int64, or a unicode array for string ids). Anything else: one
    Parquet file with ``id``, ``vector`` and the attribute columns.
    """
    path = Path(out)
    if path.suffix != ".npy":
        result: RestoreResult = restore(
            repo, ParquetTarget(path), ref, collection=collection, force=force, reporter=reporter
        )
        return {"snapshot": result.snapshot, "rows": result.rows, "path": str(path),
                "format": "parquet", "seconds": result.seconds}
    ids_path = path.with_suffix(".ids.npy")
    for p in (path, ids_path):
        check_replaceable(p)  # a device or a folder is never replaced, even with force
        if p.exists() and not force:
            raise TargetExistsError(f"{p} already exists; pass --force to replace it")
    started = time.perf_counter()
    manifest = open_snapshot(repo, ref, collection, reporter=reporter)
    with writing(path):  # a full disk or a read-only folder: TargetWriteError naming the file
        return _export_npy(repo, manifest, path, ids_path, started, reporter)


def _export_npy(repo: Repository, manifest: Manifest, path: Path, ids_path: Path, started: float,
                reporter: Reporter) -> dict[str, object]:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Random names, created exclusively: a link planted beside the output is never written through.
    tmp_vectors = temp_beside(path)
    tmp_ids: Path | None = None
    try:
        vectors = np.lib.format.open_memmap(
            tmp_vectors, mode="w+", dtype=np.float32, shape=(manifest.rows, manifest.dimension),
        )
        ids: list[np.ndarray] = []
        at = 0
        reporter.start("export", manifest.rows)
        for table in iter_live(repo, manifest):
            n = table.num_rows
            if manifest.id_type == "string" and pc.any(pc.ends_with(table.column("id"), "\0")).as_py():
                raise SchemaError(
                    f"snapshot {manifest.snapshot[:12]} has string ids ending in a NUL character, which .npy "
                    "cannot hold (numpy drops trailing NULs): export it to Parquet instead"
                )
            vectors[at : at + n] = vectors_from_arrow(table.column("vector"), manifest.dimension)
            ids.append(np.asarray(table.column("id").to_numpy(zero_copy_only=False)))
            at += n
            reporter.advance(n)
        reporter.finish()
        vectors.flush()
        del vectors
        all_ids = np.concatenate(ids) if ids else np.empty(0, np.int64)
        if manifest.id_type == "string":
            all_ids = all_ids.astype(str)
        tmp_ids = temp_beside(ids_path)
        with open(tmp_ids, "wb") as f:
            np.save(f, all_ids)
        publish(tmp_ids, ids_path)
        publish(tmp_vectors, path)
    except BaseException:
        for tmp in (tmp_vectors, tmp_ids):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        raise
    return {"snapshot": manifest.snapshot, "rows": manifest.rows, "path": str(path),
            "ids_path": str(ids_path), "format": "npy", "seconds": round(time.perf_counter() - started, 6)}
